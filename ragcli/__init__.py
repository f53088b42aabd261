"""The `rag` command line: the top layer. It composes the library (`rag`), the HTTP server (`server`)
and evaluation (`eval`); nothing imports it."""
