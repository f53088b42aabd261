"""The exceptions `rag` raises. The server maps each to an HTTP status in one place."""
from __future__ import annotations


class RagError(Exception):
    """Base class of every error this package raises on purpose."""


class InvalidInputError(RagError):
    """A request that cannot be answered as asked (blank question, bad filter, ...)."""


class InputTooLargeError(RagError):
    """A request over a documented size limit."""


class UnknownGeneratorError(InvalidInputError):
    def __init__(self, name: str, available: list[str]):
        super().__init__(f"unknown generator {name!r}; available: {', '.join(sorted(available))}")
        self.name = name


class NotFoundError(InvalidInputError):
    """Something the request names does not exist (a model, a document)."""

    code = "not_found"


class DocumentNotFoundError(NotFoundError):
    code = "document_not_found"


class DocumentError(RagError):
    """A file that cannot be read as a document (binary, unreadable, empty)."""


class IndexError_(RagError):
    """Base of index problems; named with an underscore to avoid shadowing the builtin."""


class IndexNotFoundError(IndexError_):
    pass


class IndexMismatchError(IndexError_):
    """The stored index was built with other settings (model, chunking) than the current ones."""


class IndexCorruptError(IndexError_):
    """Stored files are missing, truncated, or disagree with each other."""


class StorageError(RagError):
    """Writing to disk failed (an I/O error, a failed fsync): the write was not applied."""


class DiskFullError(StorageError):
    """No room on disk (ENOSPC, a quota, a file size limit): the write was not applied."""


class NotReadyError(RagError):
    """The index is still loading."""


class GeneratorError(RagError):
    """A generator failed to produce an answer."""


class UpstreamError(GeneratorError):
    """An upstream LLM server failed (connection, timeout, bad status, bad payload)."""

    def __init__(self, message: str, *, status: int | None = None, timeout: bool = False,
                 reason: str | None = None):
        super().__init__(message)
        self.status = status
        self.timeout = timeout
        # For metrics: timeout, connect, http_<status>, payload or circuit_open.
        self.reason = reason or ("timeout" if timeout else f"http_{status}" if status else "connect")
