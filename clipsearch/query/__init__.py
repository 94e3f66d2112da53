"""Queries: parsing a query, the query engine over catalog and vectors, and duplicate groups.
"""
