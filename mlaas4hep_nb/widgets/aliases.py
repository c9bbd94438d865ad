"""AliasEditor: computed features per class, so that files of other schemas give one feature set.

H→ZZ files name their muons ``Muon_Px``..., Z→μμ files ``px1``, ``pt1``...:
an alias ``mu_pt`` is ``max(sqrt(Muon_Px**2 + Muon_Py**2))`` in class 1 and
``fmax(pt1, pt2)`` in class 0, as ``DataStream(aliases={1: {...}, 0: {...}})``
takes them. Each expression is checked on the spot, on the first file of its
class, with the same code the stream uses.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ipywidgets as w

from ._common import unshrinking
from .labels import close_all

__all__ = ["EVERY_CLASS", "AliasEditor", "Check"]

#: the class key of definitions that hold for every class
EVERY_CLASS = None

#: ``check(label, name, expression)`` -> a type description, or raises with the reason
Check = Callable[[Any, str, str], str]


def __dir__() -> list[str]:
    return __all__


class AliasEditor:
    """Define ``name = expression`` per class (or for every class) and see at once if it works.

    Parameters
    ----------
    check : evaluates an alias for a class on that class's first file; returns
        its type (``float32``) or raises an exception whose message says why not.
    on_change : called after every change of the definitions.
    aliases : initial definitions: ``{name: expression}`` for every class, or
        ``{label: {name: expression}}`` per class (as `DataStream` takes them).

    Attributes
    ----------
    widget : the editor's layout.
    definitions : ``{label or None: {name: expression}}`` (None: every class).
    checks : ``(label, name, expression)`` -> ``(ok, text)`` of the last check.
    """

    def __init__(
        self,
        check: Check,
        on_change: Callable[[], None],
        aliases: Mapping | None = None,
    ) -> None:
        self._check, self._on_change = check, on_change
        self.definitions: dict[Any, dict[str, str]] = {EVERY_CLASS: {}}
        self.labels: list[Any] = []  # the classes definitions are checked for
        self.checks: dict[tuple[Any, str, str], tuple[bool, str]] = {}
        for key, value in (aliases or {}).items():
            if isinstance(value, Mapping):
                self.definitions.setdefault(int(key), {}).update(value)
            else:
                self.definitions[EVERY_CLASS][str(key)] = str(value)
        self.target = w.Dropdown(
            options=[("every class", EVERY_CLASS)],
            description="for",
            layout=w.Layout(width="14em"),
            style={"description_width": "initial"},
        )
        self.name = w.Text(placeholder="name, e.g. mu_pt", layout=w.Layout(width="10em"))
        self.expression = w.Text(
            placeholder="expression, e.g. max(sqrt(Muon_Px**2 + Muon_Py**2))",
            layout=w.Layout(flex="1 1 auto"),
        )
        self.set_button = w.Button(description="Set", icon="check", layout=unshrinking())
        self.listing = w.VBox()
        self.target.observe(lambda _: self._fill(), "value")
        self.set_button.on_click(lambda _: self.define(self.name.value, self.expression.value))
        self.widget = w.VBox(
            [
                w.HTML(
                    "<small>computed features in uproot's expression language, with "
                    "per-event sum(), count(), any(), all(), max(), min() of jagged values; "
                    "pick them in the branch table like branches</small>"
                ),
                w.HBox([self.target, self.name, self.expression, self.set_button]),
                self.listing,
            ]
        )

    # --- classes ----------------------------------------------------------------------------

    def set_classes(self, choices: Sequence[tuple[str, Any]]) -> None:
        """The classes in use, as ``(name, label)``; none: one set of aliases for every event."""
        self.labels = [label for _, label in choices]
        options = [("every class", EVERY_CLASS), *choices]
        if list(self.target.options) != options:
            value = self.target.value if self.target.value in [v for _, v in options] else None
            self.target.options = options
            self.target.value = value
        self._fill()

    def expression_for(self, label: Any, name: str) -> str | None:
        """The expression of ``name`` in class ``label`` (its own, else the one of every class)."""
        own = self.definitions.get(label, {})
        return own.get(name, self.definitions[EVERY_CLASS].get(name))

    @property
    def names(self) -> list[str]:
        """Every alias name, in the order defined."""
        seen = [n for definitions in self.definitions.values() for n in definitions]
        return list(dict.fromkeys(seen))

    # --- editing ----------------------------------------------------------------------------

    def define(self, name: str, expression: str, label: Any = "target") -> None:
        """Set ``name = expression`` for class ``label`` (default: the one chosen in the menu)."""
        name, expression = name.strip(), expression.strip()
        label = self.target.value if label == "target" else label
        if not name.isidentifier():
            msg = f"an alias name must be a Python identifier such as mu_pt, not {name!r}"
            raise ValueError(msg)
        if not expression:
            msg = f"give the expression of {name!r}"
            raise ValueError(msg)
        self.definitions.setdefault(label, {})[name] = expression
        self.name.value = self.expression.value = ""
        self._fill()
        self._on_change()

    def remove(self, name: str, label: Any = "target") -> None:
        """Drop the definition of ``name`` for class ``label`` (default: the one in the menu)."""
        label = self.target.value if label == "target" else label
        self.definitions.get(label, {}).pop(name, None)
        self._fill()
        self._on_change()

    def result(self, label: Any, name: str) -> tuple[bool, str] | None:
        """``(ok, type or reason)`` of ``name`` in class ``label``; None: no expression there."""
        expression = self.expression_for(label, name)
        if expression is None:
            return None
        key = (label, name, expression)
        if key not in self.checks:
            try:
                self.checks[key] = (True, self._check(label, name, expression))
            except Exception as err:
                self.checks[key] = (False, " ".join(str(err).split()))
        return self.checks[key]

    def forget_checks(self) -> None:
        """Check every expression again (the files or the tree changed)."""
        self.checks.clear()
        self._fill()

    def status(self, name: str) -> tuple[bool, str]:
        """Whether ``name`` works in every class in use, and its type or what fails where."""
        results = {label: self.result(label, name) for label in self.labels or [EVERY_CLASS]}
        missing = [label for label, found in results.items() if found is None]
        failed = {label: found[1] for label, found in results.items() if found and not found[0]}
        if missing:
            return False, f"not defined for class {', '.join(map(str, missing))}"
        if failed:
            where = "; ".join(
                text if label is EVERY_CLASS else f"class {label}: {text}"
                for label, text in failed.items()
            )
            return False, where
        kinds = sorted({found[1] for found in results.values() if found})
        return True, ", ".join(kinds)

    def _fill(self) -> None:
        label = self.target.value
        rows = []
        for name, expression in self.definitions.get(label, {}).items():
            if label is EVERY_CLASS:
                ok, text = self.status(name)
            else:
                ok, text = self.result(label, name) or (False, "")
            color = "#2e7d32" if ok else "#c62828"
            text = html.escape(f"{'✓' if ok else '✗'} {text}", quote=False)
            mark = f'<span style="color:{color}">{text}</span>'
            remove = w.Button(
                icon="times", tooltip=f"remove {name}", layout=w.Layout(width="2.4em")
            )
            remove.on_click(lambda _, n=name: self.remove(n))
            rows.append(
                w.HBox(
                    [
                        remove,
                        w.HTML(f"<code>{html.escape(name)} = {html.escape(expression)}</code>"),
                        w.HTML(mark),
                    ],
                    layout=w.Layout(align_items="center", grid_gap="0.6em"),
                )
            )
        old, self.listing.children = self.listing.children, rows
        close_all(old)
