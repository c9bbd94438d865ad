"""DeployPanel: push a trained model to a TFaaS server, manage its models, test predictions."""

from __future__ import annotations

import contextlib
import html
import os
import tempfile
from typing import TYPE_CHECKING, Any

import ipywidgets as w
import numpy as np

from ._common import Job, Status, image_box, unshrinking

if TYPE_CHECKING:
    from ..tfaas import ServerHandle, TFaaSClient
    from ..train.trainer import Trainer

__all__ = ["DeployPanel", "agreement_png"]


def __dir__() -> list[str]:
    return __all__


def agreement_png(local: np.ndarray, served: np.ndarray, name: str) -> bytes:
    """Served against local scores, one point per event, with the diagonal, as PNG bytes."""
    from ..plot import figure_png, plot_agreement

    return figure_png(plot_agreement(local, served, name))


class DeployPanel:
    """Push the trained model to a TFaaS endpoint, list and delete models, compare predictions.

    A view over `mlaas4hep_nb.TFaaSClient` (``upload``, ``models``, ``delete``,
    ``predict``) and `mlaas4hep_nb.tfaas.serve_in_background` (Start local server).
    The Delete button asks first (Confirm or Cancel); `delete` called from code
    deletes at once. What the panel shows belongs to one endpoint: changing the
    endpoint, or stopping the local server it points at, clears the model list
    and the test plot.

    Parameters
    ----------
    source : a `Trainer`, or anything with a ``trainer`` attribute (a `TrainingPanel`);
        read when pushing, so a later training is pushed.
    url : the TFaaS server; empty until given or until a local server starts.
    token : the bearer token of the server, if it needs one.
    name : the model name to push under.
    model_dir : where the local server keeps its models (a temporary folder by default).
    n_test : validation events sent by Test prediction.

    Attributes
    ----------
    widget : the ipywidgets layout (displaying the panel displays it).
    server : the `ServerHandle` of the local server, once started.
    models : the server's model names, as last listed.
    test : after Test prediction: the model's ``name``, its ``local`` and ``served``
        scores and ``max_diff``; None again once that model is deleted or the
        endpoint changes.
    """

    def __init__(
        self,
        source: Any = None,
        url: str = "",
        token: str | None = None,
        name: str = "mlaas4hep_model",
        *,
        model_dir: str | os.PathLike | None = None,
        n_test: int = 500,
    ) -> None:
        self.source = source
        self.model_dir = model_dir
        self.n_test = n_test
        self.server: ServerHandle | None = None
        self.models: list[str] = []
        self.test: dict | None = None
        self._deleting: str | None = None
        self.status = Status()
        self.job = Job(self.status)
        self._build(url, token, name)

    def _build(self, url: str, token: str | None, name: str) -> None:
        self.source_line = w.HTML()
        self.url = w.Text(
            value=url,
            description="endpoint",
            placeholder="http://host:8083, or start a local server",
            layout=w.Layout(width="32em"),
        )
        self.server_button = w.Button(
            description="Start local server", icon="server", layout=unshrinking()
        )
        self.token = w.Password(value=token or "", description="token")
        self.name = w.Text(
            value=name, description="model name", style={"description_width": "initial"}
        )
        self.push_button = w.Button(description="Push", icon="upload", button_style="primary")
        self.model_list = w.Select(options=[], rows=5, description="on server")
        self.refresh_button = w.Button(description="Refresh", icon="refresh")
        self.delete_button = w.Button(description="Delete", icon="trash", button_style="danger")
        self.confirm_text = w.HTML()
        self.confirm_button = w.Button(
            description="Confirm", icon="trash", button_style="danger", layout=unshrinking()
        )
        self.cancel_button = w.Button(description="Cancel", layout=unshrinking())
        self.confirm_box = w.VBox(
            [self.confirm_text, w.HBox([self.confirm_button, self.cancel_button])],
            layout=w.Layout(display="none"),
        )
        self.test_button = w.Button(
            description="Test prediction", icon="check", layout=unshrinking()
        )
        self.test_image = image_box(max_width="360px")
        self.test_text = w.HTML()

        self.server_button.on_click(lambda _: self.toggle_server())
        self.push_button.on_click(lambda _: self.push())
        self.refresh_button.on_click(lambda _: self.refresh())
        self.delete_button.on_click(lambda _: self.ask_delete())
        self.confirm_button.on_click(lambda _: self._confirm_delete())
        self.cancel_button.on_click(lambda _: self.cancel_delete())
        self.model_list.observe(lambda _: self.cancel_delete(), "value")
        self.test_button.on_click(lambda _: self.test_prediction())
        self.url.observe(lambda _: self._forget_endpoint(), "value")

        self.widget = w.VBox(
            [
                self.source_line,
                w.HBox([self.url, self.server_button]),
                w.HBox([self.token, self.name, self.push_button]),
                w.HBox(
                    [
                        self.model_list,
                        w.VBox([self.refresh_button, self.delete_button, self.confirm_box]),
                    ]
                ),
                self.status.widget,
                w.HBox([self.test_button, self.test_text]),
                self.test_image,
            ],
            layout=w.Layout(width="100%"),
        )
        self.refresh_source()

    def _repr_mimebundle_(self, **kwargs: Any):
        return self.widget._repr_mimebundle_(**kwargs)

    @property
    def trainer(self) -> Trainer | None:
        """The trainer to push: the source itself, or its ``trainer`` (a TrainingPanel's)."""
        return getattr(self.source, "trainer", self.source)

    def refresh_source(self) -> None:
        """Describe the model Push will send."""
        trainer = self.trainer
        text = "no trained model yet: train one first" if trainer is None else repr(trainer)
        self.source_line.value = f"<b>Model:</b> {html.escape(text)}"

    def client(self) -> TFaaSClient:
        """A `TFaaSClient` for the endpoint and token in the panel."""
        from ..tfaas.client import TFaaSClient

        url = self.url.value.strip()
        if not url:
            msg = "no endpoint: type the TFaaS server's URL, or start a local server"
            raise ValueError(msg)
        return TFaaSClient(url, token=self.token.value or None)

    def _with_client(self, call):
        with contextlib.closing(self.client()) as client:
            return call(client)

    def wait(self, timeout: float | None = None) -> Any:
        """Wait for the running job; raise its error if it failed."""
        return self.job.wait(timeout)

    # --- local server ------------------------------------------------------------------

    def toggle_server(self, wait: bool = False) -> None:
        """Start this package's TFaaS server in the kernel (or stop the one started)."""
        if self.server is not None:
            self.stop_server()
            return

        def work() -> ServerHandle:
            from ..tfaas import serve_in_background

            folder = self.model_dir or tempfile.mkdtemp(prefix="mlaas4hep-tfaas-")
            return serve_in_background(folder, port=0, token=self.token.value or None)

        def done(handle: ServerHandle) -> str:
            self.server = handle
            self.url.value = handle.url
            self.server_button.description = "Stop local server"
            self.models = self._with_client(lambda client: client.models())
            self.model_list.options = self.models
            return f"local TFaaS server at {handle.url} (models in {handle.model_dir})"

        self.job.start("starting the local server", work, done)
        if wait:
            self.wait()

    def stop_server(self) -> None:
        """Stop the local server started from this panel; clear the endpoint if it was that."""
        if self.server is not None:
            server, self.server = self.server, None
            server.stop()
            self.server_button.description = "Start local server"
            if self.url.value.strip().rstrip("/") == server.url.rstrip("/"):
                self.url.value = ""  # and with it the models and test of that server
            self.status.info(f"stopped the local server at {server.url}")

    def _forget_endpoint(self) -> None:
        """Clear what the panel showed of the previous endpoint: its models and the test."""
        self.cancel_delete()
        self.models = []
        self.model_list.options = []
        self._clear_test()

    # --- models on the server ----------------------------------------------------------

    def _list(self, client: TFaaSClient) -> list[str]:
        self.models = client.models()
        self.model_list.options = self.models
        return self.models

    def push(self, wait: bool = False) -> None:
        """Upload the trained model under the name in the panel, then list the server's models."""
        self.refresh_source()
        trainer = self.trainer
        name = self.name.value.strip()

        def work() -> str:
            if trainer is None:
                msg = "no trained model to push: train one first (TrainingPanel or Trainer.fit)"
                raise ValueError(msg)

            def upload(client: TFaaSClient) -> str:
                pushed = client.upload(trainer, name=name or None)
                self._list(client)
                return pushed

            return self._with_client(upload)

        def done(pushed: str) -> str:
            if pushed in self.models:
                self.model_list.value = pushed
            return f"pushed {pushed!r} to {self.url.value}"

        self.job.start("pushing", work, done)
        if wait:
            self.wait()

    def refresh(self, wait: bool = False) -> None:
        """List the models on the server."""
        self.job.start(
            "listing models",
            lambda: self._with_client(self._list),
            lambda models: f"{len(models)} model(s) on {self.url.value}",
        )
        if wait:
            self.wait()

    def ask_delete(self) -> None:
        """What the Delete button does: ask "Delete 'name'?" with Confirm and Cancel."""
        name = self.model_list.value
        if not name:
            self.status.info("select a model in the list first")
            return
        self._deleting = name
        self.confirm_text.value = f"Delete <b>{html.escape(repr(name))}</b>?"
        self.delete_button.layout.display = "none"
        self.confirm_box.layout.display = ""

    def cancel_delete(self) -> None:
        """Close the question of the Delete button without deleting."""
        self._deleting = None
        self.confirm_box.layout.display = "none"
        self.delete_button.layout.display = ""

    def _confirm_delete(self) -> None:
        name = self._deleting
        self.cancel_delete()
        if name:
            self.delete(name)

    def delete(self, name: str | None = None, wait: bool = False) -> None:
        """Delete a model (by default the one selected in the list) from the server, at once.

        Only the Delete button asks to confirm: a call from code is the decision.
        """
        name = name or self.model_list.value
        if not name:
            self.status.info("select a model in the list first")
            return

        def work() -> list[str]:
            def remove(client: TFaaSClient) -> list[str]:
                client.delete(name)
                return self._list(client)

            return self._with_client(remove)

        def done(_: list[str]) -> str:
            if self.test is not None and self.test["name"] == name:
                self._clear_test()
            return f"deleted {name!r}"

        self.job.start(f"deleting {name!r}", work, done)
        if wait:
            self.wait()

    # --- test --------------------------------------------------------------------------

    def test_prediction(self, wait: bool = False) -> None:
        """Send validation events to the served model and plot its scores against local ones."""
        trainer = self.trainer
        name = self.name.value.strip()

        def work() -> dict:
            if trainer is None:
                msg = "no trained model: train one and push it first"
                raise ValueError(msg)
            x = _validation_rows(trainer, self.n_test)
            local = trainer.predict(x)
            served = self._with_client(lambda client: client.predict(name, x))
            local, served = local[:, -1], served.reshape(len(x), -1)[:, -1]
            return {
                "name": name,
                "local": local,
                "served": served,
                "max_diff": float(np.abs(local - served).max()),
            }

        def done(test: dict) -> str:
            self.test = test
            self.test_image.value = agreement_png(test["local"], test["served"], name)
            self.test_text.value = (
                f"{len(test['local'])} events: max |served − local| = {test['max_diff']:.2e}"
            )
            return f"{name!r} answered {len(test['served'])} predictions"

        self.job.start(f"testing {name!r}", work, done)
        if wait:
            self.wait()

    def _clear_test(self) -> None:
        """Forget the last test: its plot and line belong to a model or server now gone."""
        self.test = None
        self.test_image.value = b""
        self.test_text.value = ""


def _validation_rows(trainer: Trainer, n: int) -> np.ndarray:
    """The first ``n`` validation events of the trainer's stream, as the model takes them."""
    x, _, _ = trainer.stream.head(n, "validation")
    if not len(x):
        msg = "the stream's validation split is empty: no events to test with"
        raise ValueError(msg)
    return x
