"""Exceptions raised for bad input; each message names the file, tree or branch at fault."""

from __future__ import annotations

__all__ = ["EmptyDataError", "SchemaError", "SourceError"]


def __dir__() -> list[str]:
    return __all__


class SourceError(OSError):
    """A file that cannot be found, reached or read as ROOT."""


class SchemaError(ValueError):
    """A tree, branch or type that does not fit the request."""


class EmptyDataError(ValueError):
    """A tree, selection or cut that leaves nothing to read."""
