"""Ingestion and serving on a Ray cluster (the optional `cluster` extra; docs/cluster.md).

A layer of its own above the library: it imports `rag` (and the app from `server`), and nothing in
`rag` or `server` imports it; only the command line does. `shard`, `coordinator`, `pool` and
`lexical` need no Ray; `ingestion` and `serving` import it when called.
"""
