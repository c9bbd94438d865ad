"""What every panel shares: a status line with errors, background jobs, figures as images."""

from __future__ import annotations

import html
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from ..errors import collect_warnings

if TYPE_CHECKING:
    pass

__all__ = ["Job", "Status", "image_box", "unshrinking"]


def __dir__() -> list[str]:
    return __all__


def image_box(**layout: Any) -> w.Image:
    """An empty PNG image widget, hidden until it gets a value."""
    image = w.Image(format="png", layout=w.Layout(display="none", **layout))

    def show(change: dict) -> None:
        image.layout.display = "" if change["new"] else "none"

    image.observe(show, "value")
    return image


def unshrinking(**layout: Any) -> w.Layout:
    """A layout for a button as wide as its text, which a crowded row never narrows.

    A stock button is 148 px wide and, as a flex item with ``overflow: hidden``,
    shrinks to nothing in a full row: "Start local ser…", "Trac…".
    """
    return w.Layout(width="auto", min_width="fit-content", flex="0 0 auto", **layout)


class Status:
    """A progress bar, a one-line message and, after a failure, the traceback one click away.

    Attributes
    ----------
    widget : the ``VBox`` to place in a panel.
    message : the text shown now (plain text).
    error : the exception of the last failure, None after a success.
    traceback : its formatted traceback ("" when there is none).
    """

    def __init__(self) -> None:
        self.progress = w.FloatProgress(
            min=0.0, max=1.0, layout=w.Layout(width="40%", display="none")
        )
        self.text = w.HTML()
        self.show_traceback = w.ToggleButton(
            description="Traceback",
            icon="bug",
            tooltip="show the full Python traceback",
            layout=unshrinking(display="none"),
        )
        self.traceback_html = w.HTML(layout=w.Layout(display="none"))
        self.show_traceback.observe(self._toggle, "value")
        self.widget = w.VBox(
            [w.HBox([self.progress, self.text, self.show_traceback]), self.traceback_html]
        )
        self.message = ""
        self.error: BaseException | None = None
        self.traceback = ""
        self._unmeasured: str | None = None

    def _toggle(self, change: dict) -> None:
        self.traceback_html.layout.display = "" if change["new"] else "none"

    def _say(self, text: str, color: str | None = None) -> None:
        self.message = text
        style = f' style="color:{color}"' if color else ""
        self.text.value = f"<span{style}>{html.escape(text)}</span>"

    def info(self, text: str) -> None:
        """Show a message (no progress bar)."""
        self._unmeasured = None
        self.progress.layout.display = "none"
        self._say(text)

    def busy(self, text: str, fraction: float | None = None) -> None:
        """Show work in progress: the message and a bar (full and blue when unmeasured)."""
        self.progress.layout.display = ""
        self._unmeasured = text if fraction is None else None
        if fraction is None:
            self.progress.bar_style = "info"
            self.progress.value = 1.0
        else:
            self.progress.bar_style = ""
            self.progress.value = min(max(float(fraction), 0.0), 1.0)
        self._say(text)

    def tick(self, seconds: float) -> None:
        """Add the time spent to the message of unmeasured work, to show it goes on."""
        text = self._unmeasured
        if text is not None:
            self._say(f"{text} ({seconds:.0f} s)")

    def succeed(self, text: str, notes: Sequence[str] = ()) -> None:
        """Show a success; ``notes`` (what the work warned about) follow it in orange."""
        self._unmeasured = None
        self.error = None
        self.traceback = ""
        self.show_traceback.layout.display = "none"
        self.show_traceback.value = False
        self.progress.layout.display = "none"
        self._say(text, "green")
        if notes:
            self.message = "; ".join([text, *notes])
            shown = "".join(f"<br>⚠ {html.escape(note, quote=False)}" for note in notes)
            self.text.value += f'<span style="color:#e65100">{shown}</span>'

    def fail(self, error: BaseException, doing: str) -> None:
        """Show ``error`` as one readable line; the traceback behind the Traceback button."""
        self._unmeasured = None
        self.error = error
        self.traceback = "".join(traceback.format_exception(error))
        self.progress.layout.display = "none"
        self._say(f"{doing} failed: {type(error).__name__}: {error}", "#c62828")
        self.traceback_html.value = (
            '<pre style="font-size:11px;line-height:1.3;max-height:20em;overflow:auto">'
            f"{html.escape(self.traceback)}</pre>"
        )
        self.show_traceback.layout.display = ""


class Job:
    """Runs one piece of work at a time in a daemon thread, reporting to a `Status`.

    The front end stays responsive while the thread works: widget changes made
    from the thread reach the browser as they happen. A failure is shown in the
    status (message and traceback) and kept for `wait`, which re-raises it.
    """

    def __init__(self, status: Status) -> None:
        self.status = status
        self._thread: threading.Thread | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        self.warnings: list[str] = []  # what the last work warned about
        self.doing = ""

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(
        self,
        doing: str,
        work: Callable[[], Any],
        done: Callable[[Any], str],
        after: Callable[[], None] | None = None,
    ) -> bool:
        """Run ``work()`` in a thread, then show ``done(result)``; False if a job still runs.

        ``after()`` runs last, whether the work succeeded or failed.
        """
        if self.running:
            self.status.info(f"still {self.doing}: wait for it to finish (or stop it)")
            return False
        self.doing = doing
        self.result = self.error = None
        self.status.busy(f"{doing}…")

        def run() -> None:
            finished = threading.Event()
            started = time.monotonic()

            def tick() -> None:
                while not finished.wait(1.0):
                    self.status.tick(time.monotonic() - started)

            threading.Thread(
                target=tick, name=f"mlaas4hep_nb: {doing} (clock)", daemon=True
            ).start()
            try:
                with collect_warnings() as warned:
                    self.result = work()
                finished.set()
                self.warnings = [str(warning) for warning in warned]
                self.status.succeed(done(self.result), self.warnings)
            except Exception as err:
                finished.set()
                self.error = err
                self.status.fail(err, doing)
            finally:
                finished.set()
                if after is not None:
                    after()

        self._thread = threading.Thread(target=run, name=f"mlaas4hep_nb: {doing}", daemon=True)
        self._thread.start()
        return True

    def wait(self, timeout: float | None = None) -> Any:
        """Block until the job ends; return its result or raise its error."""
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                msg = f"{self.doing} still runs after {timeout} s"
                raise TimeoutError(msg)
        if self.error is not None:
            raise self.error
        return self.result
