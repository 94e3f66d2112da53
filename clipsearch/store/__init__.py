"""The store: the facade (`store.Store`) that opens a store folder and hands its collaborators to the indexing
pipeline and the query engine — where the catalog lives (`catalog_place`), the writer lock (`writer_lock`), the
model, its precision and encoders (`models`), images by id (`media`), what it holds (`info`), what a run starts
from (`run_inputs`) — with its manifest (`manifest`), what its folder may hold (`folder`) and the demo.
"""
