"""Optional scale-out on a Dask cluster (imported only when a ``client`` is given).

It knows nothing of ROOT files or specs: callers pass the per-item function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar, cast

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["map_partials"]

T = TypeVar("T")
R = TypeVar("R")


def __dir__() -> list[str]:
    return __all__


def map_partials(
    client: Client,
    fn: Callable[[T], R],
    items: Sequence[T],
    sizes: Sequence[int],
    advance: Callable[[int], None],
) -> list[R]:
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
    # Client.gather has no annotations: it returns the futures' results in order
    return cast("list[R]", client.gather(futures))
