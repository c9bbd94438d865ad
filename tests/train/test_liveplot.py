"""LivePlot in notebook mode: a drawer thread shows the latest epoch and never slows training."""

from __future__ import annotations

import base64
import threading
import time

import keras
import numpy as np
import pytest

import mlaas4hep_nb as mn

pytestmark = pytest.mark.slow

EPOCHS = 100
SLOW = 0.3  # seconds added to every drawing


def epochs_shown(figure, key: str = "loss") -> int:
    """How many epochs the ``key`` curve of a LivePlot figure holds."""
    axes = figure.axes[0] if "loss" in key else figure.axes[1]
    lines = [line for line in axes.get_lines() if line.get_label() == key]
    return len(lines[0].get_xdata()) if lines else 0  # none before the first epoch ends


def drawers() -> list[threading.Thread]:
    """LivePlot drawer threads still alive."""
    return [t for t in threading.enumerate() if t.name == "mlaas4hep_nb: LivePlot drawer"]


class SlowPlot(mn.LivePlot):
    """A LivePlot whose drawings take ``SLOW`` s longer; it times its Keras hooks."""

    def __init__(self, **kwargs) -> None:
        super().__init__(notebook=True, show=False, **kwargs)
        self.figures: list = []
        self.hook_seconds: list[float] = []

    def figure(self):
        time.sleep(SLOW)
        figure = super().figure()
        self.figures.append(figure)
        return figure

    def on_train_batch_end(self, batch, logs=None):
        started = time.perf_counter()
        super().on_train_batch_end(batch, logs)
        self.hook_seconds.append(time.perf_counter() - started)

    def on_epoch_end(self, epoch, logs=None):
        started = time.perf_counter()
        super().on_epoch_end(epoch, logs)
        self.hook_seconds.append(time.perf_counter() - started)


class EpochClock(keras.callbacks.Callback):
    """When each epoch ended (perf_counter)."""

    def __init__(self) -> None:
        super().__init__()
        self.ends: list[float] = []

    def on_epoch_end(self, epoch, logs=None):
        self.ends.append(time.perf_counter())

    @property
    def seconds(self) -> float:
        """From the end of the first epoch (traced and compiled by then) to the last."""
        return self.ends[-1] - self.ends[0]


def tiny_fit(*callbacks) -> None:
    """100 fast epochs of a logistic regression on 64 events, validated on 32."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 4)).astype(np.float32)
    y = (x[:, 0] + 0.5 * rng.normal(size=96) > 0).astype(np.float32)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(
        optimizer="adam", loss="binary_crossentropy", metrics=[keras.metrics.AUC(name="auc")]
    )
    model.fit(
        x[:64],
        y[:64],
        batch_size=32,
        epochs=EPOCHS,
        validation_data=(x[64:], y[64:]),
        callbacks=list(callbacks),
        verbose=0,
    )


def test_slow_drawing_neither_lags_nor_slows_training():
    before, after = EpochClock(), EpochClock()
    tiny_fit(before)
    plot, clock = SlowPlot(min_interval=0.5), EpochClock()
    started = time.perf_counter()
    tiny_fit(plot, clock)
    elapsed = time.perf_counter() - started
    tiny_fit(after)

    # training never waited for a drawing: no hook took anywhere near one
    assert len(plot.hook_seconds) == EPOCHS * 3
    assert max(plot.hook_seconds) < SLOW / 2
    # the machine's load drifts: compare with the slower of the runs without drawing around it
    assert clock.seconds < 1.5 * max(before.seconds, after.seconds) + 1.0
    # throttled, not queued: the drawer drew during training, and at most every min_interval
    assert 2 <= plot.draws <= elapsed / 0.5 + 2
    assert len(plot.figures) == plot.draws
    shown = [epochs_shown(figure) for figure in plot.figures]
    assert shown == sorted(shown)
    assert shown[0] < EPOCHS
    # the final drawing, made by on_train_end, holds every epoch
    final = plot.figures[-1]
    assert epochs_shown(final) == epochs_shown(final, "val_loss") == EPOCHS
    assert epochs_shown(final, "val_auc") == EPOCHS
    assert plot.batch_x[-1] == pytest.approx(EPOCHS)
    (batches,) = [line for line in final.axes[0].get_lines() if "batch" in line.get_label()]
    assert batches.get_xdata()[-1] == pytest.approx(EPOCHS)
    assert not drawers()
    (png,) = plot.output.outputs
    assert base64.b64decode(png["data"]["image/png"]).startswith(b"\x89PNG")


class BrokenPlot(mn.LivePlot):
    def figure(self):
        msg = "no way to draw"
        raise RuntimeError(msg)


def test_a_drawing_error_in_the_drawer_is_raised_when_training_ends():
    plot = BrokenPlot(notebook=True, show=False)
    with pytest.raises(RuntimeError, match="no way to draw"):
        tiny_fit(plot)
    assert len(plot.history["loss"]) == EPOCHS  # training went on to the end
    assert plot.draws == 0
    assert not drawers()


def test_text_mode_starts_no_drawer(capsys):
    plot = mn.LivePlot(notebook=False)
    tiny_fit(plot)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch")]
    assert len(lines) == EPOCHS
    assert plot.draws == 0
    assert not drawers()
