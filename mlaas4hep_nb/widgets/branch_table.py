"""BranchTable: one page of rows over any number of branches, with widgets made once.

A NanoAOD tree has about a thousand branches; a widget per branch makes the
page slow and leaks widget models at every filter change. The table keeps a
fixed pool of row widgets (``page_size`` rows) and only changes their values
when the rows or the page change, so the number of widgets stays flat.
"""

from __future__ import annotations

import html
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import ipywidgets as w
from ipywidgets.widgets.widget_bool import CheckboxStyle
from ipywidgets.widgets.widget_string import HTMLStyle

__all__ = ["COLUMNS", "BranchTable", "Row"]

COLUMNS = ("", "branch", "type", "shape", "in files", "usable")
_ROW_HEIGHT = "1.9em"
_TAGS = re.compile(r"<[^>]+>")

#: injected once per table: names left-aligned in a code font, never cut, no button look
STYLE = """<style>
.mlaas4hep-branch.jupyter-button {
  text-align: left; background: transparent; box-shadow: none; padding: 0 0.3em;
  font-family: var(--jp-code-font-family, monospace); overflow: visible; text-overflow: clip;
  white-space: nowrap; max-width: none;
}
.mlaas4hep-branch.jupyter-button:hover { background: var(--jp-layout-color2, #eee); }
.mlaas4hep-group.jupyter-button { font-weight: bold; }
.mlaas4hep-oneline { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.mlaas4hep-cells { display: grid; align-items: center; gap: 0 0.8em;
  grid-template-columns: minmax(0, 12em) 5.5em minmax(0, 9em) minmax(5em, 1fr); }
.mlaas4hep-cells > * { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
</style>"""


def __dir__() -> list[str]:
    return __all__


@dataclass(frozen=True)
class Row:
    """What one table row shows: a branch, or the header of a group of branches.

    ``key`` is the branch name, or the group name for a group header;
    ``files`` and ``usable`` are HTML.
    """

    key: str
    kind: str
    text: str
    tooltip: str = ""
    type: str = ""
    shape: str = ""
    files: str = ""
    usable: str = ""
    checked: bool = False
    enabled: bool = True


def cells_html(values: Sequence[str], header: bool = False) -> str:
    """The text cells of a row (type, shape, in files, usable: HTML) on one inner grid.

    A cell too narrow for its text ends in an ellipsis; its title holds all of it.
    """
    tag = "b" if header else "span"
    cells = "".join(
        f'<{tag} title="{html.escape(html.unescape(_TAGS.sub("", value)))}">{value}</{tag}>'
        for value in values
    )
    return f'<div class="mlaas4hep-cells">{cells}</div>'


class _Shared:
    """Layouts and styles shared by every row (a widget each would be thousands of models)."""

    def __init__(self) -> None:
        self.hidden = w.Layout(display="none")
        self.box = w.Layout(width="1.6em")
        # a margin beside a width of 100% would make the grid wider than its place
        self.button = w.Layout(width="100%", height=_ROW_HEIGHT, margin="0")
        self.cells = w.Layout(width="100%", margin="0")
        self.box_style = CheckboxStyle()
        self.button_style = w.ButtonStyle()
        self.cells_style = HTMLStyle()


class _Slot:
    """The widgets of one row position, reused for whatever row is shown there."""

    def __init__(self, index: int, table: BranchTable, shared: _Shared) -> None:
        self.row: Row | None = None
        self.shared = shared
        self.box = w.Checkbox(indent=False, layout=shared.hidden, style=shared.box_style)
        self.button = w.Button(layout=shared.hidden, style=shared.button_style)
        self.button.add_class("mlaas4hep-branch")
        self.cells = w.HTML(layout=shared.hidden, style=shared.cells_style)
        self.box.observe(lambda change: table._checked(index, change["new"]), "value")
        self.button.on_click(lambda _: table._clicked(index))

    @property
    def widgets(self) -> list[w.Widget]:
        return [self.box, self.button, self.cells]

    def show(self, row: Row | None) -> None:
        self.row = row
        shared = self.shared
        layouts = (shared.box, shared.button, shared.cells) if row else (shared.hidden,) * 3
        for widget, layout in zip(self.widgets, layouts, strict=True):
            if widget.layout is not layout:
                widget.layout = layout
        if row is None:
            return
        self.box.value, self.box.disabled = row.checked, not row.enabled
        self.button.description, self.button.tooltip = row.text, row.tooltip
        if row.kind == "group":
            self.button.add_class("mlaas4hep-group")
        else:
            self.button.remove_class("mlaas4hep-group")
        self.cells.value = cells_html((row.type, row.shape, row.files, row.usable))


class BranchTable:
    """Rows shown a page at a time; the position and totals always in view.

    Parameters
    ----------
    page_size : rows on a page (the widgets of that many rows are made once).
    on_check : called as ``on_check(row, ticked)`` when a row's box is ticked or cleared.
    on_click : called as ``on_click(row)`` when a row's name is clicked.

    Attributes
    ----------
    rows : every row, on any page.
    page : the page shown, from 0.
    widget : the navigation line, the message line and the grid.
    """

    def __init__(
        self,
        page_size: int,
        on_check: Callable[[Row, bool], None],
        on_click: Callable[[Row], None],
    ) -> None:
        self.page_size = max(1, int(page_size))
        self.rows: list[Row] = []
        self.page = 0
        self._on_check, self._on_click = on_check, on_click
        self._filling = False
        self._lock = threading.RLock()
        shared = _Shared()
        self._slots = [_Slot(i, self, shared) for i in range(self.page_size)]
        self.previous = w.Button(icon="chevron-left", tooltip="previous page")
        self.next = w.Button(icon="chevron-right", tooltip="next page")
        for button in (self.previous, self.next):
            button.layout = w.Layout(width="2.6em", flex="0 0 auto")
        self.position = w.HTML()
        self.message = w.HTML()
        self.previous.on_click(lambda _: self.go(self.page - 1))
        self.next.on_click(lambda _: self.go(self.page + 1))
        header = [w.HTML(), w.HTML("<b>branch</b>"), w.HTML(cells_html(COLUMNS[2:], True))]
        self.grid = w.GridBox(
            [*header, *(widget for slot in self._slots for widget in slot.widgets)],
            layout=w.Layout(grid_gap="0 0.8em", align_items="center"),
        )
        self.set_name_width(24)
        self.widget = w.VBox(
            [
                w.HTML(STYLE),
                w.HBox(
                    [self.previous, self.position, self.next],
                    layout=w.Layout(align_items="center"),
                ),
                self.message,
                self.grid,
            ]
        )
        self.show([])

    def set_name_width(self, characters: int) -> None:
        """Make the name column wide enough for names of ``characters`` (code font)."""
        width = f"{max(12, characters) + 2}ch"
        columns = f"1.6em {width} minmax(0, 1fr)"
        if self.grid.layout.grid_template_columns != columns:
            self.grid.layout.grid_template_columns = columns

    @property
    def pages(self) -> int:
        return max(1, -(-len(self.rows) // self.page_size))

    def shown(self) -> list[tuple[Row, w.Checkbox, w.Button, w.HTML]]:
        """The rows on the page and their widgets: the box, the name and the text cells."""
        return [(slot.row, *slot.widgets) for slot in self._slots if slot.row is not None]

    @property
    def visible(self) -> list[Row]:
        """The rows on the page shown."""
        start = self.page * self.page_size
        return self.rows[start : start + self.page_size]

    def show(self, rows: Sequence[Row], message: str = "", page: int | None = None) -> None:
        """Show ``rows`` (on ``page``, default: the page shown, kept within range)."""
        with self._lock:
            self.rows = list(rows)
            self.message.value = message
            self._render(self.page if page is None else page)

    def go(self, page: int) -> None:
        """Show page ``page`` (clamped to the pages there are)."""
        with self._lock:
            self._render(page)

    def _render(self, page: int) -> None:
        self.page = min(max(0, page), self.pages - 1)
        shown = self.visible
        self._filling = True
        try:
            for slot, row in zip(self._slots, [*shown, *[None] * self.page_size], strict=False):
                slot.show(row)
        finally:
            self._filling = False
        first = self.page * self.page_size
        self.position.value = (
            f"rows {first + 1:,}–{first + len(shown):,} of {len(self.rows):,}"
            if shown
            else "no rows"
        ) + (f" · page {self.page + 1} of {self.pages}" if self.pages > 1 else "")
        self.previous.disabled = self.page == 0
        self.next.disabled = self.page >= self.pages - 1

    def _checked(self, index: int, ticked: bool) -> None:
        row = self._slots[index].row
        if not self._filling and row is not None:
            self._on_check(row, ticked)

    def _clicked(self, index: int) -> None:
        row = self._slots[index].row
        if row is not None:
            self._on_click(row)
