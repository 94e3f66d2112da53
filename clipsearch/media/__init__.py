"""Media: the one safe way to decode an image, video frame sampling, thumbnails and contact sheets, generated images.
"""
