"""Indexing: walking folders, the pipeline (diff, moves, decode, encode, commit in chunks) and the Ray encode pool.
"""
