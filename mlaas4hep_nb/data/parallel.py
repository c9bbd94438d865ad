"""Run per-file work on a small thread pool, keeping the input order."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["map_ordered"]

T = TypeVar("T")
R = TypeVar("R")


def __dir__() -> list[str]:
    return __all__


def map_ordered(fn: Callable[[T], R], items: Iterable[T], max_workers: int = 8) -> Iterator[R]:
    """``map(fn, items)`` on threads (I/O-bound work such as opening remote files)."""
    items = list(items)
    if len(items) <= 1 or max_workers <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(max_workers=min(max_workers, len(items))) as pool:
        yield from pool.map(fn, items)
