"""The catalog: images, their float16 embeddings (the source of truth), roots, runs and failures, in SQLite or
PostgreSQL. The only code that speaks SQL.
"""
