"""The units a pass reads ahead of the chunk it assembles, bounded by count and by bytes.

A unit's converted rows come as blocks (see `UnitReader`). The pass takes
from each block the rows a chunk needs; a block whose rows have all been
taken is forgotten there and then, so memory follows the chunks rather than
the units (a unit may span several chunks, with two labels each chunk takes
from units of both).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

import numpy as np

if TYPE_CHECKING:
    from .reader import Part

__all__ = ["ReadAhead"]

K = TypeVar("K", bound=Hashable)


def __dir__() -> list[str]:
    return __all__


class Pending(Protocol):
    """A read in flight: a thread's or a Dask worker's future, or an already known result."""

    def result(self) -> list[Part]: ...

    def cancel(self) -> bool: ...


class ReadAhead(Generic[K]):
    """Read the units of ``needed`` (in that order) ahead of the chunks that take them.

    `take` submits the units a chunk needs, then the next ones while fewer
    than ``count`` lie beyond the chunk's last and the bytes held stay
    within ``limit``. Bytes held are those of units submitted (their
    ``estimate`` until read, then their blocks) less the blocks already
    taken whole; ``peak`` is the most held at once. A chunk's own units are
    read whatever the limit.
    """

    def __init__(
        self,
        needed: Sequence[K],
        submit: Callable[[K], Pending],
        result: Callable[[K, Pending], list[Part]],
        estimate: Callable[[K], int],
        count: int,
        limit: int,
    ) -> None:
        self.needed = list(needed)
        self.count = count
        self.limit = limit
        self.held = 0
        self.peak = 0
        self._submit = submit
        self._result = result
        self._estimate = estimate
        self._position = {key: i for i, key in enumerate(self.needed)}
        self._submitted = 0
        self._pending: dict[K, Pending] = {}
        self._blocks: dict[K, list[Part]] = {}
        self._bytes: dict[K, int] = {}

    def take(self, key: K, low: int, high: int) -> list[tuple[Part, int, int]]:
        """``(block, first, stop)``: the rows of unit ``key`` numbered ``[low, high)``.

        The blocks taken whole are forgotten: the caller holds the last reference.
        """
        blocks = self._read(key)
        taken = []
        for block in blocks:
            first, stop = np.searchsorted(block.rows, [low, high]).tolist()
            taken.append((block, first, stop))
        kept = [block for block, _, stop in taken if stop < len(block.rows)]
        self._held(key, sum(block.nbytes for block in kept))
        self._blocks[key] = kept
        return [(block, first, stop) for block, first, stop in taken if first < stop]

    def ahead(self, keys: Sequence[K]) -> None:
        """Submit the units of a chunk (``keys``), and the next ones the bounds allow."""
        horizon = max((self._position[key] for key in keys), default=self._submitted - 1)
        while self._submitted <= horizon:
            self._start(self.needed[self._submitted])
        while (
            self._submitted < len(self.needed)
            and self._submitted <= horizon + self.count - 1
            and self.held + self._estimate(self.needed[self._submitted]) <= self.limit
        ):
            self._start(self.needed[self._submitted])

    def forget(self, key: K) -> None:
        """The unit's last chunk is assembled: drop what is left of it."""
        self._blocks.pop(key, None)
        self._held(key, 0)

    def cancel(self) -> None:
        """Cancel the reads not yet finished."""
        for pending in self._pending.values():
            pending.cancel()
        self._pending.clear()

    def _start(self, key: K) -> None:
        self._pending[key] = self._submit(key)
        self._submitted += 1
        self._held(key, self._estimate(key))

    def _read(self, key: K) -> list[Part]:
        if key not in self._blocks:
            blocks = self._result(key, self._pending.pop(key))
            self._blocks[key] = blocks
            self._held(key, sum(block.nbytes for block in blocks))
        return self._blocks[key]

    def _held(self, key: K, size: int) -> None:
        self.held += size - self._bytes.pop(key, 0)
        if size:
            self._bytes[key] = size
        self.peak = max(self.peak, self.held)
