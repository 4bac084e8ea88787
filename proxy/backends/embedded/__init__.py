"""The embedded DuckDB engine: SQL translation, generations on disk, loader and backend."""
