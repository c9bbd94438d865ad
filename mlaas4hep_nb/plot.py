"""All of our matplotlib figures: training curves, ROC, scores, branch histograms, served scores.

The training plots draw on the axes they are given, or on a new figure
(created with pyplot, then closed so that a notebook shows it once, where it
is returned); the widgets' plots (histogram, agreement) are made without
pyplot, safe in their worker threads. Only the calls that plot import this
module.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import hist
import numpy as np
from matplotlib.ticker import MaxNLocator

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "figure_png",
    "new_figure",
    "plot_agreement",
    "plot_histogram",
    "plot_history",
    "plot_roc",
    "plot_scores",
]


def __dir__() -> list[str]:
    return __all__


def _axes(ax: Axes | Sequence[Axes] | None, ncols: int = 1, width: float = 5.0):
    if ax is not None:
        first = ax if not isinstance(ax, Sequence) else ax[0]
        return first.figure, ax
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, 3.6), layout="constrained")
    plt.close(fig)
    return fig, axes


def plot_history(
    history: Mapping[str, Sequence[float]],
    batch_loss: tuple[Sequence[float], Sequence[float]] | None = None,
    ax: Sequence[Axes] | None = None,
) -> Figure:
    """Loss and val_loss (left) and AUC and val_AUC (right) per epoch.

    Parameters
    ----------
    history : ``History.history``: lists per key (``loss``, ``val_loss``, ``auc``, ``val_auc``).
    batch_loss : ``(x, loss)`` of a smoothed per-batch loss, x in epochs (1 = end of epoch 1).
    ax : two axes to draw on; a new figure when None.
    """
    fig, (loss_ax, auc_ax) = _axes(ax, ncols=2)
    if batch_loss is not None and len(batch_loss[0]):
        loss_ax.plot(batch_loss[0], batch_loss[1], color="0.7", lw=1, label="batch loss (smoothed)")
    for key, style in (("loss", "o-"), ("val_loss", "s--")):
        values = history.get(key) or []
        if values:
            loss_ax.plot(np.arange(1, len(values) + 1), values, style, label=key)
    for key, style in (("auc", "o-"), ("val_auc", "s--")):
        values = history.get(key) or []
        if values:
            auc_ax.plot(np.arange(1, len(values) + 1), values, style, label=key)
    loss_ax.set(xlabel="epoch", ylabel="loss")
    auc_ax.set(xlabel="epoch", ylabel="AUC")
    for axis in (loss_ax, auc_ax):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        if axis.has_data():
            axis.legend(loc="best", fontsize="small")
        axis.grid(alpha=0.3)
    return fig


def plot_roc(
    fpr: np.ndarray, tpr: np.ndarray, auc: float | None = None, ax: Axes | None = None
) -> Figure:
    """The ROC curve: true positive rate against false positive rate, with the diagonal."""
    fig, ax = _axes(ax)
    label = "ROC" if auc is None else f"ROC (AUC = {auc:.3f})"
    ax.plot(fpr, tpr, lw=2, label=label)
    ax.plot([0, 1], [0, 1], ls=":", color="0.5", label="random")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return fig


def plot_scores(
    scores: np.ndarray,
    y_true: np.ndarray,
    labels: Sequence[str] = ("background", "signal"),
    bins: int = 40,
    ax: Axes | None = None,
) -> Figure:
    """Normalised histograms of the classifier score of each class (filled with hist).

    Parameters
    ----------
    scores : the probability of the positive (last) class, one per event.
    y_true : the class of each event, 0..K-1.
    labels : class names, indexed by class.
    bins : bins over [0, 1].
    """
    fig, ax = _axes(ax)
    scores = np.asarray(scores, dtype=np.float64).ravel()
    y_true = np.asarray(y_true).ravel().astype(np.int64)
    for k, name in enumerate(labels):
        h = hist.Hist.new.Reg(bins, 0.0, 1.0, name="score").Double()
        h.fill(np.clip(scores[y_true == k], 0.0, 1.0))
        total = h.sum()
        density = h.values() / (total * np.diff(h.axes[0].edges)) if total else h.values()
        ax.stairs(density, h.axes[0].edges, label=f"{name} ({int(total)})", lw=1.5)
    ax.set(xlabel="classifier score", ylabel="density", xlim=(0, 1))
    # above the axes: inside, a legend covers a peak wherever the classes put theirs
    ax.legend(
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        ncols=min(len(labels), 3),
        frameon=False,
        fontsize="small",
    )
    ax.grid(alpha=0.3)
    return fig


def new_figure(width: float = 5.0, height: float = 3.4, ncols: int = 1):
    """A matplotlib Figure and its axes, made without pyplot (safe in a worker thread)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    return fig, fig.subplots(1, ncols)


def figure_png(fig: Figure, dpi: int = 80) -> bytes:
    """The figure as PNG bytes (for an ``ipywidgets.Image``)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def plot_histogram(histogram: hist.Hist, title: str) -> Figure:
    """A step plot of a one-dimensional histogram (made without pyplot)."""
    fig, ax = new_figure(5.0, 3.0)
    axis = histogram.axes[0]
    ax.stairs(histogram.values(), axis.edges, fill=True, alpha=0.6)
    ax.set(xlabel=axis.label or axis.name, ylabel="entries", title=title)
    ax.grid(alpha=0.3)
    return fig


def plot_agreement(local: np.ndarray, served: np.ndarray, name: str) -> Figure:
    """Served against local scores, one point per event, with the diagonal (without pyplot)."""
    fig, ax = new_figure(4.2, 3.6)
    ax.plot([0, 1], [0, 1], ls=":", color="0.5", label="served = local")
    ax.scatter(local, served, s=6, alpha=0.6, label=f"{len(local)} validation events")
    ax.set(
        xlabel="local score (Trainer.predict)",
        ylabel=f"served score ({name})",
        xlim=(-0.02, 1.02),
        ylim=(-0.02, 1.02),
    )
    ax.legend(loc="upper left", fontsize="small")
    ax.grid(alpha=0.3)
    return fig
