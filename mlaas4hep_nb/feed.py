"""Feed a DataStream to Keras: chunks to model inputs and targets, batched by tf.data.

One read per epoch serves both splits: the training rows of each chunk go to
the model as they come, the validation rows wait in a `RowBuffer` (spilled to
a temporary memory-mapped file past a size limit) until the epoch ends.
"""

from __future__ import annotations

import math
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf

from .metrics import one_hot

if TYPE_CHECKING:
    from .models import ModelLayout

__all__ = ["Encoder", "RowBuffer", "chunk_dataset"]

Rows = tuple[np.ndarray, np.ndarray, np.ndarray]


def __dir__() -> list[str]:
    return __all__


class Encoder:
    """Turn ``(X, mask, y)`` into what a model takes: inputs (X, or X and mask) and targets.

    Targets are ``y`` as a column for a one-output (sigmoid) model and one-hot
    rows for a model with one output per class.
    """

    def __init__(self, layout: ModelLayout, n_features: int) -> None:
        self.layout = layout
        x_spec = tf.TensorSpec([None, n_features], tf.float32)
        inputs = (x_spec, x_spec) if layout.takes_mask else x_spec
        self.signature = (inputs, tf.TensorSpec([None, layout.n_outputs], tf.float32))

    def inputs(self, x: np.ndarray, mask: np.ndarray):
        if self.layout.takes_mask:
            return x, mask.astype(np.float32)
        return x

    def targets(self, y: np.ndarray) -> np.ndarray:
        if self.layout.n_outputs == 1:
            return np.asarray(y, dtype=np.float32).reshape(-1, 1)
        return one_hot(y, self.layout.n_outputs)

    def __call__(self, x: np.ndarray, mask: np.ndarray, y: np.ndarray):
        return self.inputs(x, mask), self.targets(y)


def chunk_dataset(
    chunks: Callable[[], Iterator[Rows]], n_rows: int, batch_size: int, encoder: Encoder
) -> tf.data.Dataset:
    """A dataset of exactly ``ceil(n_rows / batch_size)`` batches cut from ``chunks()``.

    ``chunks`` is called once per pass (epoch) and must yield ``n_rows`` rows in
    all; batches span chunk boundaries, so only the last batch is short. The
    known length lets Keras size its epoch and progress bar.
    """

    def generate():
        for x, mask, y in chunks():
            if len(y):
                yield encoder(x, mask, y)

    dataset = tf.data.Dataset.from_generator(generate, output_signature=encoder.signature)
    n_batches = math.ceil(n_rows / batch_size)
    # the next chunk is read and converted on a tf.data thread while the model trains on
    # the batches of this one: training never waits at a chunk boundary
    dataset = dataset.prefetch(1).rebatch(batch_size)
    return dataset.apply(tf.data.experimental.assert_cardinality(n_batches)).prefetch(2)


class RowBuffer:
    """Rows ``(X, mask, y)`` kept for later: in memory, then in a temporary file past a limit.

    ``append`` may run on a reader thread while ``parts`` is read on another.
    """

    def __init__(self, spill_bytes: int = 512 * 2**20) -> None:
        self.spill_bytes = int(spill_bytes)
        self.rows = 0
        self.nbytes = 0
        self._parts: list[Rows] = []
        self._file = None
        self._lock = threading.Lock()

    def append(self, x: np.ndarray, mask: np.ndarray, y: np.ndarray) -> None:
        if not len(y):
            return
        arrays = (np.ascontiguousarray(x), np.ascontiguousarray(mask), np.ascontiguousarray(y))
        size = sum(a.nbytes for a in arrays)
        if self.nbytes + size > self.spill_bytes:
            arrays = self._spill(arrays)
        with self._lock:
            self._parts.append(arrays)
            self.rows += len(y)
            self.nbytes += size

    def _spill(self, arrays: tuple[np.ndarray, ...]) -> Rows:
        if self._file is None:
            # closed in close(); an anonymous file, gone when closed or at exit
            self._file = tempfile.TemporaryFile(prefix="mlaas4hep-validation-")  # noqa: SIM115
        mapped = []
        for array in arrays:
            self._file.seek(0, 2)
            offset = self._file.tell()
            self._file.write(array.tobytes())
            self._file.flush()
            mapped.append(np.memmap(self._file, array.dtype, "r", offset=offset, shape=array.shape))
        return tuple(mapped)

    def parts(self) -> list[Rows]:
        """The parts appended so far (a snapshot: later appends do not change it)."""
        with self._lock:
            return list(self._parts)

    @property
    def spilled(self) -> bool:
        return self._file is not None

    def close(self) -> None:
        """Drop the rows and delete the temporary file."""
        with self._lock:
            self._parts = []
            self.rows = self.nbytes = 0
            if self._file is not None:
                self._file.close()
                self._file = None
