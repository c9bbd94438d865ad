"""TrainingPanel: choose a model and settings, train with a live plot, judge, export."""

from __future__ import annotations

import html
import inspect
import os
from typing import TYPE_CHECKING, Any, cast

import ipywidgets as w

from ..data.defaults import DEFAULT_BATCH_SIZE
from ._common import Job, Status, image_box
from .cluster import cluster_html, file_progress_html

if TYPE_CHECKING:
    from ..data.stream import DataStream
    from ..train.trainer import Trainer

__all__ = ["TrainingPanel", "cache_note", "metrics_html"]

_MODEL_KINDS = ("MLP", "function", "file")


def __dir__() -> list[str]:
    return __all__


def _default_hidden() -> str:
    from ..train.models import default_model

    return ", ".join(
        str(units) for units in inspect.signature(default_model).parameters["hidden"].default
    )


def parse_hidden(text: str) -> tuple[int, ...]:
    """``"128, 64"`` -> ``(128, 64)``: the hidden layer sizes of the MLP."""
    try:
        sizes = tuple(int(part) for part in text.replace(",", " ").split())
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        msg = f"layer sizes must be positive integers such as '128, 64', not {text!r}"
        raise ValueError(msg)
    return sizes


def cache_note(cache: dict) -> str:
    """Where the epochs after the first take their rows from, from ``stream.report["cache"]``."""
    if cache.get("mode") is None:
        return "epoch 2+: read from the files (cache off)"
    if cache.get("complete"):
        where = f"files in {cache['path']}" if cache["on_disk"] else "memory"
        return f"epoch 2+: from cache ({cache['bytes'] / 2**20:,.0f} MiB, {where})"
    why = cache.get("full") or cache.get("reason") or "not all of it is cached"
    return f"epoch 2+: partly read from the files ({why})"


def metrics_html(result: dict, history: dict | None = None) -> str:
    """A table of `Trainer.evaluate` figures (and the last epoch's logs)."""
    rows = [
        ("AUC", f"{result['auc']:.4f}"),
        ("accuracy", f"{result['accuracy']:.4f}"),
        ("loss", f"{result['loss']:.4f}"),
        ("events", f"{result['n_events']:,}"),
    ]
    for key in ("loss", "val_loss", "auc", "val_auc"):
        if history and history.get(key):
            rows.append((f"last epoch {key}", f"{history[key][-1]:.4f}"))
    confusion = result.get("confusion")
    if confusion is not None:
        rows.append(("confusion (true × predicted)", html.escape(str(confusion.tolist()))))
    cells = "".join(f"<tr><td>{name}</td><td><b>{value}</b></td></tr>" for name, value in rows)
    return f'<table class="mlaas4hep-metrics">{cells}</table>'


class TrainingPanel:
    """Train a Keras model on a DataStream (or a Browser's selection) and judge it.

    A view over `mlaas4hep_nb.Trainer`: Train builds the stream (from the
    Browser, if given one), a `Trainer` with the chosen model and settings,
    and calls ``fit`` with the training layer's `LivePlot` drawn in the panel;
    then ``evaluate``, ``plot_roc`` and ``plot_scores``. Stop calls
    ``Trainer.stop``; Export calls ``Trainer.export``.

    Parameters
    ----------
    source : a `DataStream`, or anything with ``to_stream(**kwargs)`` (a `Browser`).
    model : None for the MLP; a function ``model(idim)``, a ``keras.Model``,
        or the path of a ``.py`` file defining ``model(idim)`` or of a ``.keras`` model.
    epochs, batch_size, learning_rate : training settings. The batch size is the
        stream's when None; Train passes it to the `Trainer`.
    export_dir : where Export writes the bundle.

    Attributes
    ----------
    widget : the ipywidgets layout (displaying the panel displays it).
    stream, trainer : the `DataStream` and `Trainer` of the last Train.
    live_box : holds the output of the training layer's `LivePlot` (``trainer.live_plot``).
    history : the Keras ``History.history`` dict of the last Train.
    result : ``Trainer.evaluate()`` after training.
    bundle : the folder of the last export.
    """

    def __init__(
        self,
        source: Any,
        model: Any = None,
        epochs: int = 5,
        batch_size: int | None = None,
        learning_rate: float = 1e-3,
        *,
        export_dir: str | os.PathLike = "bundles/mlaas4hep_model",
    ) -> None:
        self.source = source
        self.stream: DataStream | None = source if hasattr(source, "split_chunks") else None
        self.trainer: Trainer | None = None
        self.history: dict | None = None
        self.result: dict | None = None
        self.bundle = None
        self.user_model = (
            model if model is not None and not isinstance(model, (str, os.PathLike)) else None
        )
        # how the function box names a given function (or keras.Model)
        self._user_label = (
            getattr(model, "__name__", None) or getattr(model, "name", None) or "the given model"
            if self.user_model is not None
            else None
        )
        self._stop_asked = False
        self.status = Status()
        self.job = Job(self.status)
        self._build(model, epochs, batch_size, learning_rate, export_dir)

    # --- layout --------------------------------------------------------------------------

    def _build(self, model, epochs, batch_size, learning_rate, export_dir) -> None:
        if batch_size is None:
            batch_size = self.stream.batch_size if self.stream is not None else DEFAULT_BATCH_SIZE
        kind = (
            "MLP"
            if model is None
            else "file"
            if isinstance(model, (str, os.PathLike))
            else "function"
        )
        self.source_line = w.HTML()
        self.model_kind = w.ToggleButtons(options=_MODEL_KINDS, value=kind, description="model")
        self.hidden = w.Text(
            value=_default_hidden(), description="layers", tooltip="hidden layer sizes"
        )
        self.function_name = w.Text(
            value=self._user_label or "",
            description="function",
            placeholder="name of a model(idim) function in this notebook",
        )
        self.model_file = w.Text(
            value=os.fspath(model) if kind == "file" else "",
            description="file",
            placeholder="a .py file defining model(idim), or a .keras model",
        )
        compact = {"style": {"description_width": "initial"}, "layout": w.Layout(width="14em")}
        self.epochs = w.BoundedIntText(
            value=epochs, min=1, max=10_000, description="epochs", **compact
        )
        self.batch_size = w.BoundedIntText(
            value=batch_size, min=1, max=1_000_000, description="batch size", **compact
        )
        self.learning_rate = w.BoundedFloatText(
            value=learning_rate,
            min=1e-7,
            max=10.0,
            step=1e-4,
            description="learning rate",
            **compact,
        )
        self.train_button = w.Button(description="Train", icon="play", button_style="success")
        self.stop_button = w.Button(
            description="Stop", icon="stop", button_style="danger", disabled=True
        )
        self.live_box = w.Box()  # holds the training layer's LivePlot output
        self.cluster_line = w.HTML()
        self.files_box = w.HTML()  # per-file progress of the pass being read
        self.roc_image = image_box(max_width="400px")
        self.scores_image = image_box(max_width="400px")
        self.metrics = w.HTML()
        self.export_path = w.Text(value=os.fspath(export_dir), description="bundle dir")
        self.export_button = w.Button(description="Export", icon="download", disabled=True)

        self.model_kind.observe(lambda _: self._show_model_options(), "value")
        self.train_button.on_click(lambda _: self.train())
        self.stop_button.on_click(lambda _: self.stop())
        self.export_button.on_click(lambda _: self.export())
        self._model_options = w.Box()
        self._show_model_options()

        self.widget = w.VBox(
            [
                self.source_line,
                self.model_kind,
                self._model_options,
                w.HBox([self.epochs, self.batch_size, self.learning_rate]),
                w.HBox([self.train_button, self.stop_button]),
                self.cluster_line,
                self.status.widget,
                self.files_box,
                self.live_box,
                w.HBox([self.roc_image, self.scores_image]),
                self.metrics,
                w.HBox([self.export_path, self.export_button]),
            ],
            layout=w.Layout(width="100%"),
        )
        self.refresh_source()

    def _repr_mimebundle_(self, **kwargs: Any):
        return self.widget._repr_mimebundle_(**kwargs)

    def _show_model_options(self) -> None:
        shown = {"MLP": self.hidden, "function": self.function_name, "file": self.model_file}
        self._model_options.children = [shown[self.model_kind.value]]

    def refresh_source(self) -> None:
        """Describe the data the next Train will use."""
        self.source_line.value = f"<b>Data:</b> {html.escape(self._describe_source(), quote=False)}"

    def _describe_source(self) -> str:
        if self.source is self.stream:
            return repr(self.stream)
        try:
            chosen = getattr(self.source, "selection", self.source)
        except ValueError as err:
            return str(err)
        return chosen.describe() if hasattr(chosen, "describe") else repr(chosen)

    # --- the model ---------------------------------------------------------------------

    def model_choice(self, n_classes: int = 2) -> Any:
        """What the panel passes as ``Trainer(model=...)`` for the chosen kind."""
        kind = self.model_kind.value
        if kind == "MLP":
            from ..train.models import default_model

            hidden = parse_hidden(self.hidden.value)

            def mlp(idim: int):
                return default_model(idim, n_classes, hidden=hidden)

            return mlp
        if kind == "file":
            path = self.model_file.value.strip()
            if not path:
                msg = "give the path of a .py file defining model(idim), or of a .keras model"
                raise ValueError(msg)
            return path
        name = self.function_name.value.strip()
        if self.user_model is not None and name == self._user_label:
            return self.user_model
        return _notebook_function(name)

    # --- training ----------------------------------------------------------------------

    def _make_stream(self) -> DataStream:
        if self.source is self.stream and self.stream is not None:
            return self.stream
        return self.source.to_stream(batch_size=self.batch_size.value)

    def train(self, wait: bool = False) -> None:
        """Build the stream and a Trainer from the settings, fit, evaluate; in a thread."""
        from ._feedback import TrainingProgress

        if self.job.running:
            self.status.info(f"still {self.job.doing}: wait for it, or Stop")
            return
        self._stop_asked = False
        self.result = None
        self.refresh_source()

        def report(text: str, fraction: float) -> None:
            if self._stop_asked:
                # a Stop pressed while fit was starting up still ends it
                cast("Trainer", self.trainer).stop()  # reports come from its fit
            else:
                self.status.busy(text, fraction)
                stream = cast("DataStream", self.stream)  # made before the Trainer
                self.files_box.value = file_progress_html(stream.file_progress)

        def work() -> dict:
            from ..train.trainer import Trainer

            self.status.busy("reading the files and building the stream…")
            self.stream = self._make_stream()
            self.cluster_line.value = cluster_html(self.stream.client, self.stream.max_workers)
            self.status.busy("building the model…")
            self.trainer = Trainer(
                self.stream,
                model=self.model_choice(self.stream.n_classes),
                epochs=self.epochs.value,
                batch_size=self.batch_size.value,
                learning_rate=self.learning_rate.value,
                callbacks=[TrainingProgress(report)],
            )
            if self._stop_asked:
                return {}
            history = self.trainer.fit(live_plot=self._new_live_plot(), progress=False)
            self.history = history.history
            self.status.busy("evaluating on the validation split…")
            self.result = self.trainer.evaluate()
            from ..plot import figure_png

            self.roc_image.value = figure_png(self.trainer.plot_roc())
            self.scores_image.value = figure_png(self.trainer.plot_scores())
            self.metrics.value = metrics_html(self.result, self.history)
            return self.result

        def done(result: dict) -> str:
            if not result:
                return "stopped before training began"
            epochs = len(cast(dict, self.history).get("loss", []))  # set by a fit that ran
            stopped = " (stopped early)" if self._stop_asked else ""
            cache = cache_note(cast("DataStream", self.stream).report["cache"])
            return (
                f"trained {epochs} epoch(s){stopped}: validation AUC {result['auc']:.4f}; {cache}"
            )

        self._running(True)
        self.job.start("training", work, done, after=lambda: self._running(False))
        if wait:
            self.wait()

    def _new_live_plot(self):
        """The training layer's LivePlot, its output in the panel in place of the last one."""
        from ..liveplot import LivePlot

        live = LivePlot(show=False, notebook=True)
        for old in self.live_box.children:
            old.close()
        self.live_box.children = (live.output,)
        return live

    def _running(self, running: bool) -> None:
        self.train_button.disabled = running
        self.stop_button.disabled = not running
        self.export_button.disabled = running or self.trainer is None

    def stop(self) -> None:
        """Stop training after the current batch (the epoch is validated on what it read)."""
        self._stop_asked = True
        if self.trainer is not None:
            self.trainer.stop()
        if self.job.running:
            self.status.busy("stopping after this batch…")

    def wait(self, timeout: float | None = None) -> Any:
        """Wait for training or export to end; raise its error if it failed."""
        return self.job.wait(timeout)

    # --- export ------------------------------------------------------------------------

    def export(self, bundle_dir: str | os.PathLike | None = None, wait: bool = False) -> None:
        """Write the trained model as a TFaaS bundle (`Trainer.export`)."""
        if self.trainer is None:
            self.status.info("train a model first")
            return
        target = os.fspath(bundle_dir) if bundle_dir is not None else self.export_path.value

        def work():
            return self.trainer.export(target)

        def done(path) -> str:
            self.bundle = path
            return f"exported the bundle to {path}"

        self.job.start("exporting", work, done)
        if wait:
            self.wait()


def _notebook_function(name: str) -> Any:
    """The object called ``name`` in the notebook's namespace."""
    if not name:
        msg = "give the name of a function model(idim) defined in this notebook"
        raise ValueError(msg)
    from IPython import get_ipython

    shell = get_ipython()
    namespace = shell.user_ns if shell is not None else {}
    if name not in namespace or not callable(namespace[name]):
        msg = (
            f"no function {name!r} in this notebook: define def {name}(idim): ... and run that cell"
        )
        raise NameError(msg)
    return namespace[name]
