"""Encoders: model specs, the torch/open_clip encoder, the ONNX Runtime image encoder and its export cache, the
NumPy text tower, the shipped offline model and weights lookup. One interface, several backends.
"""
