"""What a loader raises. Each error says why a file is not a document, in words and as a `kind`
(the reason shown in ingest summaries), and maps to an HTTP status through its base class."""
from __future__ import annotations

from ..errors import DocumentError, InputTooLargeError


class LoaderError(DocumentError):
    """A file that cannot become a document (422 unless a subclass says otherwise)."""

    kind = "broken"


class UnsupportedFormatError(LoaderError):
    kind = "unsupported type"


class BinaryContentError(LoaderError):
    kind = "binary"


class EmptyDocumentError(LoaderError):
    kind = "empty"


class BrokenDocumentError(LoaderError):
    kind = "broken"


class UnreadableFileError(LoaderError):
    kind = "unreadable"


class MissingFileError(UnreadableFileError):
    kind = "not found"


class DocumentTooLargeError(InputTooLargeError, LoaderError):
    """Over a size, page, decompression or time bound (413: InputTooLargeError comes first in its
    ancestry, which is what decides the status)."""

    kind = "too large"
