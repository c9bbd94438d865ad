"""Optional scale-out on a Dask cluster (imported only when a ``client`` is given).

It knows nothing of ROOT files or specs: callers pass the per-item function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

__all__ = ["map_partials"]

T = TypeVar("T")


def __dir__() -> list[str]:
    return __all__


def map_partials(
    client: Any,
    fn: Callable[[T], Any],
    items: Sequence[T],
    sizes: Sequence[int],
    advance: Callable[[int], None],
) -> list[Any]:
    """``fn(item)`` of every item on the cluster's workers, returned in item order.

    ``advance(size)`` is called with the item's size as each one is done, so
    that a progress bar moves while the kernel waits. The kernel merges the
    results in order, so they equal a local pass.
    """
    from distributed import as_completed

    futures = [client.submit(fn, item, pure=False) for item in items]
    by_key = {future.key: size for future, size in zip(futures, sizes, strict=True)}
    for future in as_completed(futures):
        advance(by_key[future.key])
    return client.gather(futures)
