"""Inference statistics per model, as Triton reports them (``ModelStatistics`` over gRPC).

Every request of rows that reaches a model (`TFaaSApp.predict`) counts,
whatever its protocol: successes and failures with their time from there to
the answer (the wait for a batch and the model call), and the rows inferred.
Triton's ``execution_count`` (model calls) is the micro-batcher's own count.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

__all__ = ["InferenceStats", "ModelStats"]


def __dir__() -> list[str]:
    return __all__


@dataclass
class ModelStats:
    """The counters of one model name (they survive a re-upload, as the name does)."""

    success_count: int = 0
    success_ns: int = 0
    fail_count: int = 0
    fail_ns: int = 0
    inference_count: int = 0  # rows inferred by successful requests
    last_inference_ms: int = 0  # ms since the epoch, when the last request ended


class InferenceStats:
    """`ModelStats` by model name; `record` is called from the event loop only."""

    def __init__(self) -> None:
        self._models: dict[str, ModelStats] = {}

    def record(self, name: str, rows: int, started_ns: int, ok: bool) -> None:
        """Count one request for ``name`` that began at ``started_ns`` (``perf_counter_ns``)."""
        stats = self._models.get(name)
        if stats is None:
            stats = self._models[name] = ModelStats()
        elapsed = time.perf_counter_ns() - started_ns
        if ok:
            stats.success_count += 1
            stats.success_ns += elapsed
            stats.inference_count += rows
        else:
            stats.fail_count += 1
            stats.fail_ns += elapsed
        stats.last_inference_ms = time.time_ns() // 1_000_000

    def get(self, name: str) -> ModelStats:
        """The counters of ``name``; zeros for a model that served no request yet."""
        return self._models.get(name) or ModelStats()

    def forget(self, name: str) -> None:
        """Drop the counters of a deleted model."""
        self._models.pop(name, None)
