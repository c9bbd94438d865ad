"""Per-file statistics on a Dask cluster (imported only when a ``client`` is given)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from .selection import FileMeta
from .specs import file_partial

__all__ = ["map_partials"]


def __dir__() -> list[str]:
    return __all__


def map_partials(
    client,
    metas: Sequence[FileMeta],
    tree: str,
    selected,
    cut: str | None,
    caps: Mapping[str, int | None],
    alias_map: Mapping[str, Mapping[str, str]],
    advance: Callable[[int], None],
) -> list[dict]:
    """`file_partial` of every file on the cluster's workers, returned in file order.

    Each worker computes the same per-file partials as the local pass, and the
    kernel merges them in file order, so the result is the same FeatureSpec.
    ``advance(entries)`` is called as each file is done.
    """
    from distributed import as_completed

    futures = [
        client.submit(
            file_partial, meta, tree, selected, cut, caps, alias_map.get(meta.path), pure=False
        )
        for meta in metas
    ]
    entries = {future.key: meta.entries for future, meta in zip(futures, metas, strict=True)}
    for future in as_completed(futures):
        advance(entries[future.key])
    return client.gather(futures)
