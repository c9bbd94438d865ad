"""A Keras ``PyDataset`` view of a DataStream (imports Keras, so kept out of the core)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import keras

if TYPE_CHECKING:
    from .stream import DataStream

__all__ = ["StreamPyDataset"]


def __dir__() -> list[str]:
    return __all__


class StreamPyDataset(keras.utils.PyDataset):
    """Batches of a DataStream split in order; the stream shuffles, so fit with shuffle=False."""

    def __init__(self, stream: DataStream, split: str | None, with_mask: bool = False) -> None:
        super().__init__(workers=1, use_multiprocessing=False)
        self.stream = stream
        self.split = split
        self.with_mask = with_mask
        self._batches = None
        self._next = 0

    @property
    def num_batches(self) -> int:
        return math.ceil(self.stream.count(self.split) / self.stream.batch_size)

    def __getitem__(self, index: int):
        if index == 0 or self._batches is None:
            self._batches = self.stream.batches(self.split)
            self._next = 0
        if index != self._next:
            msg = (
                f"batch {index} asked for out of order (expected {self._next}): a stream is read "
                "in order; call model.fit(..., shuffle=False) — the stream shuffles itself"
            )
            raise IndexError(msg)
        try:
            x, mask, y = next(self._batches)
        except StopIteration:
            msg = f"batch {index} is past the end of the {self.split!r} split"
            raise IndexError(msg) from None
        self._next += 1
        return ((x, mask), y) if self.with_mask else (x, y)
