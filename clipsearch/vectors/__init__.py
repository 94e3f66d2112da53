"""The vector index: FAISS structures derived from the catalog's embeddings, their files, the exact re-rank
vectors and the self-join. The only code that touches FAISS.
"""
