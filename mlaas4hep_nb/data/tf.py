"""The one adapter from a stream to TensorFlow and Keras (imported on first use: it imports TF).

`chunk_dataset` turns a pass over chunks into a ``tf.data.Dataset`` of batches
(batches span chunk boundaries; tf.data cuts them in C++): `to_tf_dataset`
and the Trainer both use it. `StreamPyDataset` serves the same batches to
Keras as a ``PyDataset``. Both are typed against `Batches`, the little a
stream must offer, not against `DataStream`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import keras
import numpy as np
import tensorflow as tf
from numpy.typing import NDArray

__all__ = ["Batches", "Encoding", "Plain", "StreamPyDataset", "chunk_dataset", "to_tf_dataset"]

#: ``(X, mask, y)``: features, which of them are real (not padding or NaN), labels
Rows = tuple[NDArray[np.float32], NDArray[np.bool_], NDArray[np.float32]]


def __dir__() -> list[str]:
    return __all__


class Batches(Protocol):
    """What the adapters need of a stream (`DataStream` is one)."""

    batch_size: int

    @property
    def n_features(self) -> int: ...

    def chunks(self, split: str | None = None) -> Iterator[Rows]: ...

    def batches(self, split: str | None = None) -> Iterator[Rows]: ...

    def count(self, split: str | None = None) -> int: ...


class Encoding(Protocol):
    """Rows ``(X, mask, y)`` to one dataset element, and the element's ``tf.TensorSpec``s."""

    signature: Any

    def __call__(
        self, x: NDArray[np.float32], mask: NDArray[np.bool_], y: NDArray[np.float32]
    ) -> Any: ...


class Plain:
    """``(X, y)``, or ``((X, mask), y)`` with ``with_mask``: the stream's rows as they are."""

    def __init__(self, n_features: int, with_mask: bool = False) -> None:
        self.with_mask = with_mask
        x_spec = tf.TensorSpec([None, n_features], tf.float32)
        inputs = (x_spec, tf.TensorSpec([None, n_features], tf.bool)) if with_mask else x_spec
        self.signature = (inputs, tf.TensorSpec([None], tf.float32))

    def __call__(
        self, x: NDArray[np.float32], mask: NDArray[np.bool_], y: NDArray[np.float32]
    ) -> Any:
        return ((x, mask), y) if self.with_mask else (x, y)


def chunk_dataset(
    chunks: Callable[[], Iterator[Rows]],
    n_rows: int | None,
    batch_size: int,
    encoding: Encoding,
    passes: int = 1,
) -> tf.data.Dataset:
    """A dataset of batches of ``batch_size`` rows cut from ``chunks()`` (only the last is short).

    ``chunks`` is called once per pass (epoch). With ``n_rows`` (the rows a
    pass yields) the dataset knows its length, ``ceil(n_rows / batch_size)``,
    so that Keras can size its epoch and progress bar. With ``passes`` > 1
    the dataset holds that many passes in a row (each ends with its own short
    batch), and the first batches of the next pass are made while the last
    ones of this pass train: iterate it once, with Keras's ``steps_per_epoch``.
    """

    def generate() -> Iterator[Any]:
        for x, mask, y in chunks():
            if len(y):
                yield encoding(x, mask, y)

    dataset = tf.data.Dataset.from_generator(generate, output_signature=encoding.signature)
    # the next chunk is read and converted on a tf.data thread while the model trains on
    # the batches of this one: training never waits at a chunk boundary
    dataset = dataset.prefetch(1).rebatch(batch_size)
    if n_rows is not None:
        n_batches = math.ceil(n_rows / batch_size)
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(n_batches))
    if passes > 1:
        dataset = dataset.repeat(passes)
    return dataset.prefetch(2)


def to_tf_dataset(stream: Batches, split: str | None, with_mask: bool = False) -> tf.data.Dataset:
    """``(X, y)`` batches of ``split`` as a ``tf.data.Dataset`` (``((X, mask), y)`` with_mask)."""
    encoding = Plain(stream.n_features, with_mask)
    return chunk_dataset(lambda: stream.chunks(split), None, stream.batch_size, encoding)


class StreamPyDataset(keras.utils.PyDataset):  # type: ignore[misc]  # keras has no types
    """Batches of a stream's split in order; the stream shuffles, so fit with shuffle=False."""

    def __init__(self, stream: Batches, split: str | None, with_mask: bool = False) -> None:
        super().__init__(workers=1, use_multiprocessing=False)
        self.stream = stream
        self.split = split
        self.encoding = Plain(stream.n_features, with_mask)
        self._batches: Iterator[Rows] | None = None
        self._next = 0

    @property
    def num_batches(self) -> int:
        return math.ceil(self.stream.count(self.split) / self.stream.batch_size)

    def __getitem__(self, index: int) -> Any:
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
            rows = next(self._batches)
        except StopIteration:
            msg = f"batch {index} is past the end of the {self.split!r} split"
            raise IndexError(msg) from None
        self._next += 1
        return self.encoding(*rows)
