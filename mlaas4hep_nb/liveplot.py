"""LivePlot: a Keras callback that draws loss and AUC while a model trains.

In a notebook kernel a drawer thread redraws a matplotlib figure into an
``ipywidgets.Output`` that it owns, always of the latest recorded state (at
most ``1 / min_interval`` times a second; training never waits for it);
elsewhere it prints one line per epoch.
"""

from __future__ import annotations

import base64
import io
import sys
import threading
import time
from typing import TYPE_CHECKING

import keras

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["LivePlot", "in_notebook"]

_EPOCH_KEYS = ("loss", "val_loss", "auc", "val_auc", "accuracy", "val_accuracy")
_MAX_POINTS = 1000  # batch-loss points drawn
_DRAW_SHARE = 10  # wait at least this many times the last drawing's duration


def __dir__() -> list[str]:
    return __all__


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where widgets and rich display work)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class LivePlot(keras.callbacks.Callback):
    """Loss and val_loss, AUC and val_AUC per epoch, and a smoothed per-batch loss.

    In a notebook, the Keras hooks only record values and wake a drawer thread
    (one per training run); it snapshots what was recorded, draws it, then
    waits before drawing again. Redraws are throttled, never queued: each one
    shows the latest state, however far training ran ahead meanwhile. When
    training ends the drawer stops and the final state is drawn once more.

    Parameters
    ----------
    min_interval : seconds between the starts of two redraws (0.5: at most about 2 a
        second); longer when drawing is slow, so that the drawer spends at most about a
        tenth of the time drawing (it competes with training for the GIL).
    smoothing : weight of the past in the exponential moving average of the batch loss.
    show : display the widget when training begins; None shows it in a notebook
        only. Pass False when the ``output`` widget is placed in a layout instead.
    notebook : force notebook (True) or text (False) mode; None detects a kernel.

    Attributes
    ----------
    output : the ``ipywidgets.Output`` it draws into.
    history : lists per metric, one value per finished epoch.
    batch_x, batch_loss : the smoothed per-batch loss, x in epochs.
    draws : how many times the figure was redrawn.
    """

    def __init__(
        self,
        min_interval: float = 0.5,
        smoothing: float = 0.9,
        show: bool | None = None,
        notebook: bool | None = None,
    ) -> None:
        super().__init__()
        import ipywidgets

        self.output = ipywidgets.Output()
        self.min_interval = float(min_interval)
        self.smoothing = float(smoothing)
        self.notebook = in_notebook() if notebook is None else bool(notebook)
        self.show = self.notebook if show is None else bool(show)
        self._shown = False
        self._changed = threading.Condition()  # guards the record and wakes the drawer
        self._drawing = threading.Lock()  # one drawing at a time into ``output``
        self._drawer: threading.Thread | None = None
        self._stopping = False
        self._error: Exception | None = None
        self.reset()

    def reset(self) -> None:
        """Forget recorded epochs and batches."""
        with self._changed:
            self.history: dict[str, list[float]] = {}
            self.batch_x: list[float] = []
            self.batch_loss: list[float] = []
            self._stale = False
        self.draws = 0
        self._epoch = 0
        self._steps: int | None = None
        self._seen = 0
        self._running: float | None = None
        self._ema: float | None = None
        self._epoch_start = time.perf_counter()

    # --- Keras hooks ---------------------------------------------------------------------

    def on_train_begin(self, logs=None) -> None:
        self._steps = self.params.get("steps") if self.params else None
        if self.show and not self._shown:
            from IPython.display import display

            display(self.output)
            self._shown = True
        if self.notebook:
            self._start_drawer()

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self._epoch = epoch
        self._seen = 0
        self._running = None
        self._epoch_start = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        if not logs or "loss" not in logs:
            return
        self._seen = batch + 1
        running = float(logs["loss"])
        # Keras reports the epoch's running mean; recover this batch's own loss from it
        loss = running if self._running is None else self._seen * running - batch * self._running
        self._running = running
        self._ema = (
            loss if self._ema is None else self.smoothing * self._ema + (1 - self.smoothing) * loss
        )
        steps = self._steps or max(self._seen, 1)
        with self._changed:
            self.batch_x.append(self._epoch + self._seen / steps)
            self.batch_loss.append(self._ema)
            self._mark_stale()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        with self._changed:
            for key, value in (logs or {}).items():
                self.history.setdefault(key, []).append(float(value))
            self._mark_stale()
        if not self.notebook:
            print(self.epoch_line(epoch, logs or {}), file=sys.stdout, flush=True)

    def on_train_end(self, logs=None) -> None:
        if not self.notebook:
            return
        self._stop_drawer()
        error, self._error = self._error, None
        if error is not None:
            raise error
        self.draw()

    # --- drawing -------------------------------------------------------------------------

    def epoch_line(self, epoch: int, logs: dict) -> str:
        """One line of text for an epoch: its metrics and duration."""
        parts = [f"{k} {float(logs[k]):.4f}" for k in _EPOCH_KEYS if k in logs]
        total = self.params.get("epochs") if self.params else None
        seconds = time.perf_counter() - self._epoch_start
        where = f"epoch {epoch + 1}" + (f"/{total}" if total else "")
        return f"{where}: " + "  ".join(parts) + f"  ({seconds:.1f} s)"

    def figure(self) -> Figure:
        """A new figure of what was recorded so far (drawn without pyplot: thread-safe)."""
        from .plot import new_figure, plot_history

        with self._changed:  # a consistent snapshot; training appends meanwhile
            history = {key: list(values) for key, values in self.history.items()}
            step = max(1, len(self.batch_x) // _MAX_POINTS)  # thin out: drawing time stays flat
            batches = (self.batch_x[::step], self.batch_loss[::step])
        _, axes = new_figure(5.0, 3.6, ncols=2)
        return plot_history(history, batches, ax=list(axes))

    def draw(self) -> None:
        """Redraw the figure into ``output`` now (as a PNG, replacing the previous one).

        It sets the widget's outputs rather than capturing ``display`` calls,
        which works from any thread (fit may run in a background thread) and
        never touches the output of the user's cell.
        """
        with self._drawing:
            with self._changed:
                self._stale = False  # what changes from here on is drawn next time
            buffer = io.BytesIO()
            self.figure().savefig(buffer, format="png", dpi=80)
            png = base64.b64encode(buffer.getvalue()).decode("ascii")
            self.output.outputs = (
                {
                    "output_type": "display_data",
                    "data": {"image/png": png, "text/plain": "<LivePlot figure>"},
                    "metadata": {},
                },
            )
            self.draws += 1

    # --- the drawer thread ---------------------------------------------------------------

    def _mark_stale(self) -> None:
        """Note new values and wake the drawer (the caller holds ``_changed``)."""
        self._stale = True
        self._changed.notify()

    def _start_drawer(self) -> None:
        self._stop_drawer()  # one left over from a fit that raised
        self._stopping = False
        self._error = None
        self._drawer = threading.Thread(
            target=self._draw_while_training, name="mlaas4hep_nb: LivePlot drawer", daemon=True
        )
        self._drawer.start()

    def _stop_drawer(self) -> None:
        """Stop the drawer and wait for it (for at most the drawing it may be making)."""
        with self._changed:
            self._stopping = True
            self._changed.notify()
        if self._drawer is not None:
            self._drawer.join()
            self._drawer = None

    def _draw_while_training(self) -> None:
        """Draw the latest state whenever it is stale, then rest; until stopped."""
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._stale or self._stopping)
                if self._stopping:
                    return
            started = time.perf_counter()
            try:
                self.draw()
            except Exception as err:  # shown by on_train_end, which re-raises it
                self._error = err
                return
            took = time.perf_counter() - started
            # a slow drawing (matplotlib takes ~0.1 s) is spaced out to stay a small share
            rest = max(self.min_interval, _DRAW_SHARE * took) - took
            with self._changed:
                self._changed.wait_for(lambda: self._stopping, timeout=max(rest, 0.0))
                if self._stopping:
                    return
