"""Every exception `rag` raises on purpose, as one tree by kind of failure.

    RagError
    ├── RequestError              the request is at fault; retrying it unchanged fails again      400
    │   ├── InvalidInputError         malformed or impossible request (blank question, bad filter)  422
    │   │   ├── UnknownGeneratorError
    │   │   └── DocumentError         a file or upload that cannot be read as a document
    │   ├── InputTooLargeError        over a documented size limit                                 413
    │   ├── NotFoundError             something the request names does not exist                    404
    │   │   └── DocumentNotFoundError
    │   ├── UnsupportedMediaError     a body or file type the service does not take                 415
    │   ├── ConflictError             conflicts with what exists (a collection's name)              409
    │   ├── UnauthorizedError         missing or wrong API key (the message never says which)       401
    │   ├── ForbiddenError            not allowed at all (writes disabled, cross-site, wrong host)   403
    │   └── CancelledError            the client left before its write was made (nothing written)   499
    ├── UnavailableError          the service cannot answer now; retry later                          503
    │   ├── NotReadyError             the index is still loading
    │   └── IndexError_               the stored index cannot be served
    │       ├── IndexNotFoundError
    │       ├── IndexMismatchError    built with other settings (model, chunking)
    │       └── IndexCorruptError     missing, truncated or inconsistent files
    ├── StorageError              a write could not be made durable; nothing was acknowledged          503
    │   └── DiskFullError             no room on disk (ENOSPC, a quota, a file size limit)          507
    └── GeneratorError            an answer could not be generated                                     502
        └── UpstreamError             the LLM server failed                                          502
            ├── UpstreamTimeoutError                                                                 504
            ├── UpstreamStatusError   it answered with an error status (`.status`)
            ├── UpstreamConnectError
            ├── UpstreamPayloadError  it answered something that is not a chat completion
            └── CircuitOpenError      not called: too many recent failures                           503

The HTTP statuses are the server's (`server/errors.py` maps each class, most specific first by the
class's own ancestry, so the order of a table never matters); the CLI prints the message and exits 2.
"""
from __future__ import annotations


class RagError(Exception):
    """Base class of every error this package raises on purpose."""

    code: str | None = None  # a stable machine-readable name, where clients need one


# -- the request is at fault -----------------------------------------------------------------
class RequestError(RagError):
    """The request cannot be served as sent."""


class InvalidInputError(RequestError):
    """A request that cannot be answered as asked (blank question, bad filter, ...)."""


class UnknownGeneratorError(InvalidInputError):
    def __init__(self, name: str, available: list[str]):
        super().__init__(f"unknown generator {name!r}; available: {', '.join(sorted(available))}")
        self.name = name


class DocumentError(InvalidInputError):
    """A file that cannot be read as a document (binary, unreadable, empty, unsupported)."""


class InputTooLargeError(RequestError):
    """A request over a documented size limit."""


class NotFoundError(RequestError):
    """Something the request names does not exist (a model, a document)."""

    code = "not_found"


class DocumentNotFoundError(NotFoundError):
    code = "document_not_found"


class UnsupportedMediaError(RequestError):
    """A body or file type the API does not take."""


class ConflictError(RequestError):
    """The request conflicts with what exists (a collection of that name, ...)."""


class UnauthorizedError(RequestError):
    """A missing or wrong API key (the message never says which)."""


class CancelledError(RequestError):
    """The client went away before its write was made; nothing was written."""


class ForbiddenError(RequestError):
    """Not allowed for anyone sending it this way (writes disabled, a cross-site write, ...)."""


# -- the service cannot answer now -----------------------------------------------------------
class UnavailableError(RagError):
    """Temporarily unable to serve; the same request may succeed later."""


class NotReadyError(UnavailableError):
    """The index is still loading."""


class IndexError_(UnavailableError):
    """Base of index problems; named with an underscore to avoid shadowing the builtin."""


class IndexNotFoundError(IndexError_):
    pass


class IndexMismatchError(IndexError_):
    """The stored index was built with other settings (model, chunking) than the current ones."""


class IndexCorruptError(IndexError_):
    """Stored files are missing, truncated, or disagree with each other."""


# -- durability -----------------------------------------------------------------------------
class StorageError(RagError):
    """Writing to disk failed (an I/O error, a failed fsync): the write was not applied."""


class DiskFullError(StorageError):
    """No room on disk (ENOSPC, a quota, a file size limit): the write was not applied."""


# -- generation -----------------------------------------------------------------------------
class GeneratorError(RagError):
    """A generator failed to produce an answer."""


class UpstreamError(GeneratorError):
    """An upstream LLM server failed. `reason` names the kind for metrics."""

    reason = "upstream"


class UpstreamTimeoutError(UpstreamError):
    reason = "timeout"


class UpstreamConnectError(UpstreamError):
    reason = "connect"


class UpstreamPayloadError(UpstreamError):
    reason = "payload"


class UpstreamStatusError(UpstreamError):
    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status
        self.reason = f"http_{status}"


class CircuitOpenError(UpstreamError):
    """The circuit breaker is open: the LLM server is not called for a while after repeated failures."""

    reason = "circuit_open"
