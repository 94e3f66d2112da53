"""The store: the facade that opens a store folder, builds the catalog, vector store and encoders and hands them
to the indexing pipeline and the query engine; its manifest and what its folder may hold.
"""
