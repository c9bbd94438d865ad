"""Exceptions raised for bad input, and warnings; each message names the file, tree or branch."""

from __future__ import annotations

import contextlib
import inspect
import os
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "EmptyDataError",
    "SchemaError",
    "SkippedBranchWarning",
    "SourceError",
    "collect_warnings",
    "warn_user",
]

_PACKAGE = str(Path(__file__).parent) + os.sep
_COLLECTOR = threading.local()


def __dir__() -> list[str]:
    return __all__


class SourceError(OSError):
    """A file that cannot be found, reached or read as ROOT."""


class SchemaError(ValueError):
    """A tree, branch or type that does not fit the request."""


class EmptyDataError(ValueError):
    """A tree, selection or cut that leaves nothing to read."""


class SkippedBranchWarning(UserWarning):
    """Branches left out of a selection, listed in ``spec.skipped``.

    Unsupported branches that a glob matched, and constant branches that the
    default selection or a glob took (a branch named exactly is kept).
    """


@contextlib.contextmanager
def collect_warnings() -> Iterator[list[Warning]]:
    """This package's warnings raised in this thread go into the list yielded, not to stderr.

    For work that a widget runs in a thread: the panel shows them, while
    ``warnings.catch_warnings`` would change the filters of every thread.
    """
    outer = getattr(_COLLECTOR, "into", None)
    collected: list[Warning] = []
    _COLLECTOR.into = collected
    try:
        yield collected
    finally:
        _COLLECTOR.into = outer


def warn_user(message: str, category: type[Warning]) -> None:
    """``warnings.warn`` attributed to the first caller outside this package.

    A fixed ``stacklevel`` points into the package whenever the call comes
    through another layer (a generator, an adapter, the Trainer); walking the
    frames finds the user's line however deep the call is. Inside
    `collect_warnings`, the warning is collected instead.
    """
    collected = getattr(_COLLECTOR, "into", None)
    if collected is not None:
        collected.append(category(message))
        return
    level = 2
    here = inspect.currentframe()
    frame = here.f_back if here is not None else None
    while frame is not None and frame.f_back is not None:
        if not frame.f_code.co_filename.startswith(_PACKAGE):
            break
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)
