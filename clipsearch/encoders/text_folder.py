"""The files of a text tower's folder (the NumPy weights' `config.json` with its format number, and CLIP's BPE
vocabulary), named in one place for the runtimes and exporters that read or write such a folder."""

FORMAT = 1
CONFIG = "config.json"
VOCAB = "bpe_simple_vocab_16e6.txt.gz"
