"""The matplotlib figures of plot.py: what they show and where their legends go."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from mlaas4hep_nb.plot import plot_scores


@pytest.mark.parametrize("n_classes", [2, 4])
def test_the_scores_legend_sits_above_the_axes_inside_the_figure(n_classes):
    rng = np.random.default_rng(0)
    y = rng.integers(0, n_classes, 4000)
    scores = np.clip(rng.normal(0.45 + 0.05 * y, 0.05), 0, 1)  # peaks under the top middle
    labels = [f"class {k}" for k in range(n_classes)]
    figure = plot_scores(scores, y, labels=labels)
    canvas = FigureCanvasAgg(figure)  # as savefig(png) draws it
    canvas.draw()
    renderer = canvas.get_renderer()
    (axes,) = figure.axes
    legend = axes.get_legend().get_window_extent(renderer)
    frame = axes.get_window_extent(renderer)
    assert legend.y0 >= frame.y1  # covers no bin
    assert figure.bbox.x0 <= legend.x0  # not cut off
    assert legend.x1 <= figure.bbox.x1
    assert legend.y1 <= figure.bbox.y1
    texts = [text.get_text() for text in axes.get_legend().get_texts()]
    assert [text.split(" (")[0] for text in texts] == labels
