"""Dynamic micro-batching: gather concurrent requests into one batched model call.

Requests for one model queue up while its previous call runs in a worker
thread; when the call returns, everything queued (up to ``max_rows``) goes
into the next call at once. A request that finds the batcher idle waits up
to ``max_wait`` seconds for company unless it already brings
``eager_rows`` rows. Each request gets back exactly the rows it sent, in
order, so a batch never mixes answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor

import numpy as np

__all__ = ["MicroBatcher"]


def __dir__() -> list[str]:
    return __all__


def _wake(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


class MicroBatcher:
    """Batch the calls of ``function`` (rows ``[n, k]`` -> outputs ``[n, m]``) from one event loop.

    Parameters
    ----------
    function : the model call; it runs in ``executor``, one call at a time.
    executor : where the calls run, so the event loop keeps serving meanwhile;
        None runs them in the event loop itself.
    max_rows : the most rows gathered into one call (a larger request runs alone).
    max_wait : seconds an idle batcher waits for more requests before calling.
    eager_rows : requests of at least this many rows do not wait.
    """

    def __init__(
        self,
        function: Callable[[np.ndarray], np.ndarray],
        executor: Executor | None,
        max_rows: int = 2048,
        max_wait: float = 0.002,
        eager_rows: int = 256,
    ) -> None:
        self._function = function
        self._executor = executor
        self.max_rows = max_rows
        self.max_wait = max_wait
        self.eager_rows = eager_rows
        self._pending: list[tuple[np.ndarray, asyncio.Future]] = []
        self._rows = 0
        self._task: asyncio.Task | None = None
        self._wakeup: asyncio.Future | None = None
        self.calls = 0
        self.rows = 0

    async def __call__(self, x: np.ndarray) -> np.ndarray:
        """The outputs for the rows ``x``, computed in a batch with concurrent requests."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((x, future))
        self._rows += len(x)
        if self._task is None:
            self._task = loop.create_task(self._drain())
        elif self._rows >= self.max_rows and self._wakeup is not None:
            _wake(self._wakeup)
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            if self._rows < self.eager_rows:
                self._wakeup = loop.create_future()
                timer = loop.call_later(self.max_wait, _wake, self._wakeup)
                await self._wakeup
                timer.cancel()
                self._wakeup = None
            while self._pending:
                batch = self._take()
                await self._run(loop, batch)
        finally:
            self._task = None

    def _take(self) -> list[tuple[np.ndarray, asyncio.Future]]:
        # rows of another width (a model of unknown input width) wait for the next call
        width = self._pending[0][0].shape[1:]
        taken, rows = 0, 0
        for x, _ in self._pending:
            if taken and (rows + len(x) > self.max_rows or x.shape[1:] != width):
                break
            taken += 1
            rows += len(x)
        batch, self._pending = self._pending[:taken], self._pending[taken:]
        self._rows -= rows
        return batch

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list) -> None:
        inputs = [x for x, _ in batch]
        x = inputs[0] if len(inputs) == 1 else np.concatenate(inputs)
        try:
            if self._executor is None:
                y = self._function(x)
            else:
                y = await loop.run_in_executor(self._executor, self._function, x)
            if len(y) != len(x):
                msg = f"the model returned {len(y)} rows for {len(x)}"
                raise RuntimeError(msg)
        except BaseException as err:
            for _, future in batch:
                if not future.done():
                    future.set_exception(err)
            if not isinstance(err, Exception):
                raise
            return
        self.calls += 1
        self.rows += len(x)
        start = 0
        for part, future in batch:
            stop = start + len(part)
            if not future.done():
                future.set_result(y[start:stop])
            start = stop
