"""Feed a DataStream to a model: chunks to its inputs and targets (`data.tf` batches them).

One read per epoch serves both splits: the training rows of each chunk go to
the model as they come, the validation rows wait in a `RowBuffer` (spilled to
a temporary memory-mapped file past a size limit) until the epoch ends.
"""

from __future__ import annotations

import tempfile
import threading
from typing import IO, TYPE_CHECKING, cast

import numpy as np
import tensorflow as tf

from ..data.tf import Rows
from .metrics import one_hot

if TYPE_CHECKING:
    from .models import ModelLayout

__all__ = ["Encoder", "RowBuffer"]


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


class RowBuffer:
    """Rows ``(X, mask, y)`` kept for later: in memory, then in a temporary file past a limit.

    ``append`` may run on a reader thread while ``parts`` is read on another.
    """

    def __init__(self, spill_bytes: int = 512 * 2**20) -> None:
        self.spill_bytes = int(spill_bytes)
        self.rows = 0
        self.nbytes = 0
        self._parts: list[Rows] = []
        self._file: IO[bytes] | None = None
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

    def _spill(self, arrays: Rows) -> Rows:
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
        return cast("Rows", tuple(mapped))

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
