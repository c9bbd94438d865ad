"""Which entries of which files make up each chunk, and which events are for validation."""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["Group", "Slice", "Unit", "file_key", "file_units", "layout", "validation_mask"]

#: a cluster up to this many times a unit's target stays whole (cut in parts, each part
#: would decompress the whole cluster again: uproot reads whole baskets)
_LONGEST = 4


def __dir__() -> list[str]:
    return __all__


@dataclass(frozen=True)
class Group:
    """Files that share a label (None: the label is read from a branch)."""

    label: int | None
    files: tuple[str, ...]
    entries: tuple[int, ...]

    @property
    def total(self) -> int:
        return sum(self.entries)


@dataclass(frozen=True)
class Unit:
    """Entries ``[start, stop)`` of one file: the unit of reading, aligned to clusters."""

    group: int
    file: str
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


def file_units(
    group: int, path: str, entries: int, clusters: Sequence[int], target: int, cut: bool = True
) -> list[Unit]:
    """Split a file into cluster-aligned units of about ``target`` entries.

    Clusters in a row are joined while the run stays within ``target``: a whole
    cluster is read once, each basket decompressed once. A cluster longer than
    ``target`` stays whole up to ``4 * target`` entries (the reader converts it
    a few columns at a time, into blocks freed as chunks take them); a longer
    one is cut evenly into parts of at most that (each part decompresses the
    cluster's baskets again), or with ``cut=False`` left whole.
    """
    bounds = sorted({c for c in clusters if 0 < c < entries} | {entries})
    units: list[Unit] = []
    start = end = 0  # the run of whole clusters [start, end) not yet made a unit
    for bound in bounds:
        if bound - start > target and end > start:
            units.append(Unit(group, path, start, end))
            start = end
        if bound - start > target:
            parts = -(-(bound - start) // (_LONGEST * target)) if cut else 1
            edges = [start + (bound - start) * i // parts for i in range(parts + 1)]
            units.extend(Unit(group, path, a, b) for a, b in itertools.pairwise(edges))
            start = bound
        end = bound
    if end > start:
        units.append(Unit(group, path, start, end))
    return units


@dataclass(frozen=True)
class Slice:
    """Rows of one unit that fall into a chunk: group positions ``[low, high)``."""

    unit: int
    offset: int
    low: int
    high: int


def layout(orders: Sequence[Sequence[Unit]], n_chunks: int) -> list[list[tuple[int, Slice]]]:
    """For each chunk, the (group, slice) pairs that compose it.

    Units of a group are laid end to end in ``orders[group]``; chunk ``k``
    takes from every group its proportional share of positions, so every
    chunk mixes the labels in proportion to their sizes and every entry
    lands in exactly one chunk.
    """
    chunks: list[list[tuple[int, Slice]]] = [[] for _ in range(n_chunks)]
    for g, order in enumerate(orders):
        total = sum(unit.size for unit in order)
        offsets = [0]
        for unit in order:
            offsets.append(offsets[-1] + unit.size)
        u = 0
        for k in range(n_chunks):
            low, high = total * k // n_chunks, total * (k + 1) // n_chunks
            while u < len(order) and offsets[u + 1] <= low:
                u += 1
            v = u
            while v < len(order) and offsets[v] < high:
                chunks[k].append((g, Slice(v, offsets[v], low, high)))
                v += 1
    return chunks


def file_key(path: str) -> int:
    """A stable 64-bit key of a file's name, the same for a local copy and a remote one."""
    name = os.path.basename(path.rstrip("/"))
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")


def _splitmix64(x: NDArray[np.uint64]) -> NDArray[np.uint64]:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    # numpy's stubs give Any for uint64 shifts and xors
    return cast("NDArray[np.uint64]", x ^ (x >> np.uint64(31)))


def validation_mask(
    key: int, entries: NDArray[np.integer], seed: int, fraction: float
) -> NDArray[np.bool_]:
    """Which of a file's ``entries`` belong to validation: a hash of (file, entry, seed).

    The split depends on neither chunk size nor read order, so the same seed
    always gives the same split.
    """
    if fraction <= 0:
        return np.zeros(len(entries), dtype=bool)
    salt = np.uint64((key ^ (seed * 0x632BE59BD9B4E019)) & 0xFFFFFFFFFFFFFFFF)
    mixed = _splitmix64(_splitmix64(entries.astype(np.uint64)) ^ salt)
    return cast(
        "NDArray[np.bool_]", (mixed >> np.uint64(11)).astype(np.float64) * 2.0**-53 < fraction
    )
