"""LabelEditor: the class of each opened file, or of each event by an expression.

Per file, as MLaaS4HEP labels its inputs (``DataStream({label: files})``);
per event, an expression such as ``nJet >= 4`` gives the class (True is 1),
so that one file can feed both classes (``DataStream(files, label=...)``).
"""

from __future__ import annotations

import fnmatch
import html
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import ipywidgets as w

from ..data.paths import expand

__all__ = ["NOT_USED", "LabelEditor", "close_all"]

#: the menu value of a file that is in no class (a Dropdown shows None as blank)
NOT_USED = -1
_MODES = (("per file", "file"), ("per event", "event"))


def __dir__() -> list[str]:
    return __all__


def close_all(widgets: Iterable[w.Widget]) -> None:
    """Close widgets and everything inside them, so that replacing them leaks no models."""
    for widget in widgets:
        close_all(getattr(widget, "children", ()))
        widget.close()


class LabelEditor:
    """Assign opened files to classes 0..K-1, or give the class of each event by an expression.

    Parameters
    ----------
    on_change : called after every change of classes, labels or the expression.
    expression : an expression giving each event's class; starts in "per event" mode.

    Attributes
    ----------
    widget : the editor's layout.
    classes : the number of classes (a ``BoundedIntText``).
    rows : one line per opened file: its class menu and its name.
    """

    def __init__(self, on_change: Callable[[], None], expression: str | None = None) -> None:
        self._on_change = on_change
        self._labels: dict[str, int | None] = {}
        self.classes = w.BoundedIntText(
            value=2,
            min=2,
            max=50,
            description="classes",
            style={"description_width": "initial"},
            layout=w.Layout(width="8em"),
        )
        self.mode = w.ToggleButtons(
            options=_MODES,
            value="event" if expression else "file",
            tooltips=["each file is one class", "an expression gives each event's class"],
            style={"button_width": "6.5em"},
        )
        self.expression = w.Text(
            value=expression or "",
            placeholder="class of each event, e.g. nJet >= 4 (True: 1, False: 0)",
            continuous_update=False,
            layout=w.Layout(width="auto", flex="1 1 auto"),
        )
        self.rows = w.VBox(layout=w.Layout(max_height="12em", overflow="hidden auto"))
        self._body = w.Box()
        self.classes.observe(lambda _: self._fill(), "value")
        self.mode.observe(lambda _: self._mode_changed(), "value")
        self.expression.observe(lambda _: self._on_change(), "value")
        self.widget = w.VBox([w.HBox([self.classes, self.mode]), self._body])
        self._show_body()

    # --- what the editor holds -------------------------------------------------------------

    def class_names(self) -> list[str]:
        """Names of the classes: background and signal for two, else their numbers."""
        if self.classes.value == 2:
            return ["0: background", "1: signal"]
        return [str(k) for k in range(self.classes.value)]

    @property
    def labels(self) -> dict[str, int | None]:
        """The class of each opened file (None: not used)."""
        return dict(self._labels)

    @property
    def files(self) -> dict[int, list[str]]:
        """``{label: files}`` of the labelled files, labels in order."""
        grouped: dict[int, list[str]] = {}
        for path, label in self._labels.items():
            if label is not None:
                grouped.setdefault(label, []).append(path)
        return dict(sorted(grouped.items()))

    @property
    def per_event(self) -> str | None:
        """The expression giving each event's class, in "per event" mode; else None."""
        text = self.expression.value.strip()
        return text if self.mode.value == "event" and text else None

    # --- changes ----------------------------------------------------------------------------

    def set_files(self, files: Iterable[str], assign: Mapping[int, Any] | None = None) -> None:
        """Show ``files`` (keeping their labels); ``assign`` gives files their class."""
        self._labels = {path: self._labels.get(path) for path in files}
        for label, group in (assign or {}).items():
            for path in expand(group):
                self._labels[path] = int(label)
        used = [label for label in self._labels.values() if label is not None]
        if used and max(used) + 1 > self.classes.value:
            self.classes.value = max(used) + 1  # refills
        else:
            self._fill()

    def set_label(self, paths: Any, label: int | None) -> None:
        """Put opened files (paths or globs) in class ``label`` (None: not used)."""
        items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        for item in items:
            pattern = os.fspath(item)
            found = [f for f in self._labels if f == pattern or fnmatch.fnmatchcase(f, pattern)]
            if not found:
                msg = f"{pattern!r} is none of the opened files: {list(self._labels)}"
                raise KeyError(msg)
            for path in found:
                self._labels[path] = label
        if label is not None and label >= self.classes.value:
            self.classes.value = label + 1  # refills
        else:
            self._fill()

    def _mode_changed(self) -> None:
        self._show_body()
        self._on_change()

    def _show_body(self) -> None:
        body = self.rows if self.mode.value == "file" else self.expression
        self._body.children = (body,)

    def _fill(self) -> None:
        options = [("not used", NOT_USED)] + [(n, k) for k, n in enumerate(self.class_names())]
        rows = []
        for path, label in self._labels.items():
            if label is not None and label >= self.classes.value:
                self._labels[path] = label = None
            menu = w.Dropdown(
                options=options,
                value=NOT_USED if label is None else label,
                layout=w.Layout(width="10em", flex="0 0 auto"),
            )
            menu.observe(lambda change, p=path: self._set(p, change["new"]), "value")
            name = w.HTML(
                f'<span class="mlaas4hep-oneline" title="{html.escape(path)}">'
                f"{html.escape(os.path.basename(path))}</span>"
            )
            rows.append(w.HBox([menu, name]))
        old, self.rows.children = self.rows.children, rows
        close_all(old)
        self._on_change()

    def _set(self, path: str, value: int) -> None:
        self._labels[path] = None if value == NOT_USED else value
        self._on_change()
