"""Browser: open ROOT files, see their trees and branches, pick features and labels, get specs."""

from __future__ import annotations

import fnmatch
import html
import json
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import ipywidgets as w

from ..data.branch_groups import filter_names, group_names, no_match_hint
from ..data.measure import compute_specs
from ..data.paths import expand, user_cache_dir
from ..data.selection import LABEL_ALIAS, Selection
from ..data.sources import alias_info, catalog, list_trees, preview
from ._common import Job, Status, image_box, unshrinking
from .aliases import EVERY_CLASS, AliasEditor
from .branch_table import BranchTable, Row
from .cluster import cluster_html
from .labels import LabelEditor

if TYPE_CHECKING:
    import hist
    from distributed import Client

    from ..data.sources import BranchInfo, Catalog, TreeInfo
    from ..data.spec import FeatureSpec
    from ..data.stream import DataStream

__all__ = ["FILTER_PAUSE", "LABEL_ALIAS", "Browser", "Selection"]

_MAX_RECENT = 12
#: seconds of quiet typing before the filter applies
FILTER_PAUSE = 0.1
_RED, _GREEN, _ORANGE = "#c62828", "#2e7d32", "#e65100"


def __dir__() -> list[str]:
    return __all__


def _recent_file() -> Path:
    return user_cache_dir() / "recent_paths.json"


def _load_recent() -> list[str]:
    try:
        recent = json.loads(_recent_file().read_text())
    except (OSError, ValueError):
        return []
    return [item for item in recent if isinstance(item, str)][:_MAX_RECENT]


def _save_recent(recent: list[str]) -> None:
    path = _recent_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(recent))
    except OSError:
        pass  # a read-only home only loses the memory of recent paths


def tree_options(infos: Sequence[TreeInfo]) -> list[tuple[str, str]]:
    """Select options drawing the trees as a tree: directories (value ends in /) and trees."""
    options: list[tuple[str, str]] = []
    shown: set[str] = set()
    indent = "\u00a0\u00a0\u00a0"
    for info in infos:
        parts = info.name.split("/")
        for depth in range(len(parts) - 1):
            folder = "/".join(parts[: depth + 1]) + "/"
            if folder not in shown:
                shown.add(folder)
                options.append((f"{indent * depth}▾ {parts[depth]}/", folder))
        where = f", {info.files} files" if info.files > 1 else ""
        label = f"{parts[-1]}  ({info.kind}, {info.entries:,} entries{where})"
        options.append((f"{indent * (len(parts) - 1)}• {label}", info.name))
    return options


def histogram_png(histogram: hist.Hist, title: str) -> bytes:
    """A step plot of a one-dimensional histogram, as PNG bytes."""
    from ..plot import figure_png, plot_histogram

    return figure_png(plot_histogram(histogram, title))


def _colored(text: str, color: str) -> str:
    return f'<span style="color:{color}">{html.escape(text, quote=False)}</span>'


class Browser:
    """Browse ROOT files, pick branches and labels, compute the FeatureSpec.

    A view over `mlaas4hep_nb.list_trees`, `sources.catalog`, `preview` and
    `compute_specs`: everything it shows comes from those calls, and every
    button has a method that code can call (`open`, `filter`, `pick`,
    `set_label`, `show_preview`, `compute_specs`).

    The branch table holds every branch of every opened file, grouped as
    NanoAOD groups them (``nJet`` and ``Jet_*`` are the group ``Jet``; a click
    on a group folds or unfolds it, its box picks all of it), a page at a
    time. Its "in files" column counts, per class, the files that hold each
    branch: a branch is usable when every file in use has it, or when it is an
    alias defined for every class.

    Parameters
    ----------
    path : a path, URL, glob or a list of them to open at once; or
        ``{label: files}`` to open them with their labels set.
    tree : the tree to show first (default: the first one found).
    branches : names or globs (branches or aliases) to pick at once.
    labels : ``{label: files}`` assigning opened files to classes.
    label : an expression giving each event's class (``nJet >= 4``: True is 1),
        instead of a class per file; one file can then feed every class.
    aliases : computed features, ``{name: expression}`` for every class or
        ``{label: {name: expression}}`` per class, as `DataStream` takes them.
    max_len, cut : the options of `compute_specs`.
    client : a ``dask.distributed.Client``: specs and streams run on its workers
        (the panel links its dashboard).
    preview_entries : entries read for a branch preview.
    page_size : branch table rows on one page.

    Attributes
    ----------
    widget : the ipywidgets layout (displaying the Browser displays it).
    files_opened : every file opened, in order.
    trees : the `TreeInfo` of each tree in them.
    catalog : the branches of the current tree across the files (`sources.Catalog`).
    spec : the `FeatureSpec` of the current selection, None until computed.
    histogram : the last previewed `hist.Hist`.
    table : the `BranchTable` of the branch rows.
    """

    def __init__(
        self,
        path: Any = None,
        tree: str | None = None,
        branches: Sequence[str] | None = None,
        labels: Mapping[int, Any] | None = None,
        *,
        label: str | None = None,
        aliases: Mapping | None = None,
        max_len: int | None = None,
        cut: str | None = None,
        preview_entries: int = 100_000,
        page_size: int = 30,
        client: Client | None = None,
    ) -> None:
        self.client = client
        self.preview_entries = preview_entries
        self.files_opened: list[str] = []
        self.trees: list[TreeInfo] = []
        self.catalog: Catalog | None = None
        self._infos: dict[str, BranchInfo] = {}
        self.spec: FeatureSpec | None = None
        self.tree: str | None = None
        self.histogram: hist.Hist | None = None
        self.previewed: str | None = None
        self._showing_trees = False
        self._picked: set[str] = set()
        self._expanded: set[str] = set()
        self._groups: dict[str, list[str]] = {}
        self._group_of: dict[str, str] = {}
        self._pending_picks = list(branches or [])
        self._pending_tree = tree
        self._spec_for: Selection | None = None
        self._timer: threading.Timer | None = None
        self._typing = True  # filter_box changes come from the user (debounced)
        self._table_lock = threading.RLock()
        self.status = Status()
        self.job = Job(self.status)
        self._build(label, aliases, max_len, cut, page_size)
        if isinstance(path, Mapping):
            labels = {**path, **(labels or {})}
            path = [f for files in path.values() for f in expand(files)]
        self._pending_labels = dict(labels or {})
        if path is not None:
            self.open(path)

    # --- layout --------------------------------------------------------------------------

    def _build(self, label, aliases, max_len, cut, page_size: int) -> None:
        self.path_box = w.Text(
            placeholder="file, glob, root://host//path or https:// URL (several: space-separated)",
            layout=w.Layout(flex="1 1 auto"),
        )
        self.open_button = w.Button(
            description="Open",
            icon="folder-open",
            button_style="primary",
            layout=unshrinking(),
        )
        self.recent = w.Dropdown(
            options=[("recent paths", "")] + [(p, p) for p in _load_recent()],
            layout=w.Layout(width="14em", flex="0 0 auto"),
        )
        self.tree_list = w.Select(options=[], rows=5, layout=w.Layout(width="auto"))
        self.label_editor = LabelEditor(self._labels_changed, label)
        self.alias_editor = AliasEditor(self._check_alias, self._aliases_changed, aliases)
        self.aliases_box = w.Accordion([self.alias_editor.widget], selected_index=None)
        self.filter_box = w.Text(
            placeholder="filter: Jet_*, *_pt, MET_pt, or a group such as Jet",
            tooltip="globs match whole names; without * or ? a name (or group) exactly; "
            "names are case-sensitive",
            layout=w.Layout(width="20em"),
        )
        self.pick_matching = w.Button(
            description="Pick matching",
            icon="check-square",
            tooltip="pick every usable branch the filter lets through, on all pages",
            layout=unshrinking(),
        )
        self.clear_picks = w.Button(description="Clear", icon="square", layout=unshrinking())
        self.picked_label = w.HTML()
        self.table = BranchTable(page_size, self._row_checked, self._row_clicked)
        self.preview_image = image_box(max_width="100%")
        self.max_len_box = w.BoundedIntText(
            value=max_len or 0,
            min=0,
            max=10_000,
            description="pad ≤",
            tooltip="pad jagged branches to at most this length (0: the longest seen)",
            layout=w.Layout(width="10em", flex="0 0 auto"),
        )
        self.cut_box = w.Text(
            value=cut or "",
            placeholder="cut, e.g. (nJet >= 4) & (MET_pt > 20)",
            layout=w.Layout(flex="1 1 auto"),
        )
        self.specs_button = w.Button(
            description="Compute specs",
            icon="calculator",
            button_style="success",
            layout=unshrinking(),
        )
        self.summary = w.HTML()
        self.cluster_line = w.HTML(cluster_html(self.client))

        self.open_button.on_click(lambda _: self.open(self.path_box.value.split()))
        self.recent.observe(self._recent_chosen, "value")
        self.tree_list.observe(self._tree_chosen, "value")
        self.filter_box.observe(self._filter_typed, "value")
        self.pick_matching.on_click(lambda _: self.pick(*self.matching_branches()))
        self.clear_picks.on_click(lambda _: self.clear())
        self.max_len_box.observe(lambda _: self._selection_changed(), "value")
        self.cut_box.observe(lambda _: self._selection_changed(), "value")
        self.specs_button.on_click(lambda _: self.compute_specs())
        self._title_aliases()

        def section(title: str, *children: w.Widget, **layout: Any) -> w.VBox:
            return w.VBox([w.HTML(f"<b>{title}</b>"), *children], layout=w.Layout(**layout))

        self.widget = w.VBox(
            [
                w.HBox([self.path_box, self.open_button, self.recent]),
                w.HBox(
                    [
                        section("Trees", self.tree_list, width="34%", overflow="hidden"),
                        section("Labels", self.label_editor.widget, width="64%"),
                    ],
                    layout=w.Layout(grid_gap="1em"),
                ),
                self.aliases_box,
                w.HBox(
                    [
                        section(
                            "Branches",
                            w.HBox([self.filter_box, self.pick_matching, self.clear_picks]),
                            self.picked_label,
                            self.table.widget,
                            width="66%",
                            overflow="hidden",
                        ),
                        section(
                            "Preview (click a branch name)",
                            self.preview_image,
                            width="32%",
                            overflow="hidden",
                        ),
                    ],
                    layout=w.Layout(grid_gap="1em"),
                ),
                w.HBox([self.max_len_box, self.cut_box, self.specs_button]),
                self.cluster_line,
                self.status.widget,
                self.summary,
            ],
            layout=w.Layout(width="100%"),
        )

    def _repr_mimebundle_(self, **kwargs: Any):
        return self.widget._repr_mimebundle_(**kwargs)

    # --- opening -------------------------------------------------------------------------

    def open(self, path: Any, wait: bool = False) -> None:
        """Open files (path, URL, glob or a list): list trees, and the first tree's branches."""
        items: list[Any] = [path] if isinstance(path, (str, os.PathLike)) else list(path)
        items = [os.fspath(item) for item in items]
        shown = " ".join(items)
        if self.path_box.value != shown:
            self.path_box.value = shown

        def work() -> tuple[list[str], list[TreeInfo]]:
            files = expand(items)
            return files, list_trees(files)

        def done(result: tuple[list[str], list[TreeInfo]]) -> str:
            files, trees = result
            self.files_opened, self.trees = files, trees
            self.label_editor.set_files(files, self._pending_labels)
            self._pending_labels = {}
            self._remember(shown)
            names = [t.name for t in trees]
            tree = self._pending_tree if self._pending_tree in names else None
            tree = tree or (names[0] if names else None)
            self._pending_tree = None
            self._load_branches(tree)
            self._show_trees(tree_options(trees), tree)
            if tree is None:
                return f"no TTree or RNTuple in {len(files)} file(s)"
            return (
                f"{len(files)} file(s), {len(trees)} tree(s); "
                f"{self.tree}: {len(self.branch_infos)} branches"
            )

        self.job.start(f"opening {shown}", work, done)
        if wait:
            self.job.wait()

    def _remember(self, shown: str) -> None:
        recent = [shown] + [p for p, _ in self.recent.options[1:] if p != shown]
        recent = recent[:_MAX_RECENT]
        self.recent.options = [("recent paths", "")] + [(p, p) for p in recent]
        self.recent.value = ""  # the placeholder, which opens nothing
        _save_recent(recent)

    def _recent_chosen(self, change: dict) -> None:
        if change["new"]:
            self.open(change["new"])

    def _show_trees(self, options: list[tuple[str, str]], tree: str | None) -> None:
        """Set the tree list without taking it for a user's choice."""
        self._showing_trees = True
        try:
            self.tree_list.options = options
            self.tree_list.value = tree
        finally:
            self._showing_trees = False

    def _tree_chosen(self, change: dict) -> None:
        name = change["new"]
        if self._showing_trees or not name or name.endswith("/") or name == self.tree:
            return
        started = self.job.start(
            f"reading the branches of {name}",
            lambda: self._load_branches(name),
            lambda _: f"{name}: {len(self.branch_infos)} branches",
        )
        if not started:  # busy: keep showing the tree whose branches are shown
            self._show_trees(self.tree_list.options, self.tree)

    def _load_branches(self, tree: str | None) -> None:
        found = catalog(self.files_opened, tree) if tree is not None else None
        with self._table_lock:
            self.tree, self.catalog = tree, found
            self._infos = {b.name: b for b in found.branches} if found is not None else {}
            names = list(self._infos)
            self._groups = group_names(names)
            self._group_of = {n: g for g, members in self._groups.items() for n in members}
            self._expanded &= set(self._groups)
            self._picked &= set(names) | set(self.alias_editor.names)
        headers = [len(f"▾ {g} ({n} of {n})") for g, n in self._group_sizes().items()]
        self.table.set_name_width(max([len(n) for n in names] + headers + [12]))
        self.alias_editor.forget_checks()
        self._classes_changed()
        if self._pending_picks:
            patterns, self._pending_picks = self._pending_picks, []
            self.pick(*patterns)
        self._selection_changed()
        self._refresh_table(page=0)

    def _group_sizes(self) -> dict[str, int]:
        return {group: len(members) for group, members in self._groups.items() if group}

    @property
    def branch_infos(self) -> list[BranchInfo]:
        """Every branch of the current tree in any opened file, first seen first."""
        return list(self._infos.values())

    # --- which files are in use, and which branches they all hold ------------------------

    def _files_in_use(self) -> dict[Any, list[str]]:
        """The files that will be read, by class (one group, None, when events carry the class)."""
        by_file = self.label_editor.files
        if self.label_editor.mode.value == "file" and by_file:
            return dict(by_file)
        return {None: list(self.files_opened)}

    def _presence(self, name: str) -> tuple[str, bool]:
        """The "in files" cell of a branch (HTML) and whether every file in use holds it."""
        if self.catalog is None:
            return "", False
        groups = self._files_in_use()
        counts = {k: (self.catalog.count(name, files), len(files)) for k, files in groups.items()}
        everywhere = all(n == total for n, total in counts.values())
        text = " · ".join(
            f"{n}/{total}" if k is None else f"{k}: {n}/{total}" for k, (n, total) in counts.items()
        )
        return (html.escape(text) if everywhere else _colored(text, _RED)), everywhere

    def _usable(self, name: str) -> bool:
        if name in self.alias_editor.names:
            return self.alias_editor.status(name)[0]
        info = self._infos.get(name)
        return info is not None and info.supported and self._presence(name)[1]

    # --- the branch table ----------------------------------------------------------------

    def _constants(self) -> dict[str, str]:
        """Branches the last specs found constant, with why (they carry no information)."""
        return self.spec.constants if self.spec is not None else {}

    def _branch_row(self, info: BranchInfo, constants: dict[str, str]) -> Row:
        files, everywhere = self._presence(info.name)
        usable = info.supported and everywhere
        if not info.supported:
            verdict = _colored(f"✗ {info.reason}", _RED)
        elif not everywhere:
            verdict = _colored("✗ missing in some files: alias it per class", _RED)
        elif info.name in constants:
            verdict = _colored(f"⚠ {constants[info.name]}", _ORANGE)
        else:
            verdict = "✓"
        kind = f"{info.typename} ({info.dtype})" if info.dtype else info.typename
        return Row(
            key=info.name,
            kind="branch",
            text=info.name,
            tooltip=f"{info.title or info.name}: click for a histogram",
            type=html.escape(kind),
            shape=info.shape,
            files=files,
            usable=verdict,
            checked=info.name in self._picked,
            enabled=usable,
        )

    def _alias_row(self, name: str) -> Row:
        ok, text = self.alias_editor.status(name)
        labels = self.alias_editor.labels or [EVERY_CLASS]
        defined = [k for k in labels if self.alias_editor.expression_for(k, name) is not None]
        where = " · ".join("every event" if k is None else f"{k}: alias" for k in defined)
        return Row(
            key=name,
            kind="alias",
            text=name,
            tooltip=f"alias {name}: computed per class (Aliases above)",
            type="= alias",
            shape=html.escape(text) if ok else "",
            files=html.escape(where),
            usable="✓" if ok else _colored(f"✗ {text}", _RED),
            checked=name in self._picked,
            enabled=ok,
        )

    def _group_row(self, group: str, members: list[str], filtering: bool) -> Row:
        usable = [m for m in members if self._usable(m)]
        total = len(self._groups[group])
        count = f"{len(members)} of {total}" if len(members) < total else f"{total}"
        fold = "" if filtering else ("▾ " if group in self._expanded else "▸ ")
        unusable = len(members) - len(usable)
        return Row(
            key=group,
            kind="group",
            text=f"{fold}{group} ({count})",
            tooltip=f"{'' if filtering else 'click to fold or unfold; '}the box picks all of it",
            shape="group",
            usable=_colored(f"{unusable} unusable", _RED) if unusable else "✓",
            checked=bool(usable) and all(m in self._picked for m in usable),
            enabled=bool(usable),
        )

    def _rows(self, pattern: str) -> tuple[list[Row], str]:
        """The rows the filter lets through, groups folded or not, and the no-match message."""
        infos = self._infos
        aliases = self.alias_editor.names
        names = [*aliases, *infos]
        matching = set(filter_names(names, pattern, self._groups))
        if pattern.strip() and not matching:
            return [], _colored(no_match_hint(names, pattern), _RED)
        constants = self._constants()
        rows = [self._alias_row(name) for name in aliases if name in matching]
        filtering = bool(pattern.strip())
        opened: set[str] = set()
        for name, info in infos.items():
            group = self._group_of.get(name, "")
            if name not in matching or group in opened:
                continue
            if not group:
                rows.append(self._branch_row(info, constants))
                continue
            opened.add(group)
            members = [m for m in self._groups[group] if m in matching]
            rows.append(self._group_row(group, members, filtering))
            if filtering or group in self._expanded:
                rows.extend(self._branch_row(infos[m], constants) for m in members)
        return rows, ""

    def _refresh_table(self, page: int | None = None) -> None:
        with self._table_lock:
            rows, message = self._rows(self.filter_box.value)
            self.table.show(rows, message, page)
            self._update_picked_label()

    def _row_checked(self, row: Row, ticked: bool) -> None:
        names = [row.key]
        if row.kind == "group":
            members = filter_names(self._groups[row.key], self.filter_box.value, self._groups)
            names = [m for m in members if self._usable(m)]
        if ticked:
            self._picked.update(names)
        else:
            self._picked.difference_update(names)
        self._refresh_table()
        self._selection_changed()

    def _row_clicked(self, row: Row) -> None:
        if row.kind == "group":
            if not self.filter_box.value.strip():
                self._expanded ^= {row.key}
                self._refresh_table()
        elif row.kind == "alias":
            self.status.info(f"{row.key} is an alias: it is computed when the files are read")
        else:
            self.show_preview(row.key)

    def filter(self, pattern: str) -> None:
        """Show the rows that ``pattern`` lets through, now (typing waits for a pause)."""
        self._typing = False
        try:
            self.filter_box.value = pattern
        finally:
            self._typing = True
        self._apply_filter()

    def _filter_typed(self, change: dict) -> None:
        if not self._typing:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = threading.Timer(FILTER_PAUSE, self._apply_filter)
        self._timer.daemon = True
        self._timer.start()

    def _apply_filter(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._refresh_table(page=0)

    def expand(self, *groups: str) -> None:
        """Unfold groups of the branch table (``Jet``); with no argument, every group."""
        self._expanded |= set(groups or self._groups) - {""}
        self._refresh_table()

    def collapse(self) -> None:
        """Fold every group of the branch table."""
        self._expanded.clear()
        self._refresh_table()

    # --- picking -------------------------------------------------------------------------

    def matching_branches(self) -> list[str]:
        """The usable branches and aliases the filter lets through, on every page."""
        names = [*self.alias_editor.names, *(b.name for b in self.branch_infos)]
        found = filter_names(names, self.filter_box.value, self._groups)
        return [name for name in found if self._usable(name)]

    def _update_picked_label(self) -> None:
        picked = self.picked
        text = (
            f"{len(picked)} picked: {', '.join(picked)}"
            if picked
            else "none picked: the specs take every usable branch"
        )
        self.picked_label.value = (
            f'<div class="mlaas4hep-oneline" title="{html.escape(text)}">'
            f"<small>{html.escape(text)}</small></div>"
        )

    @property
    def picked(self) -> list[str]:
        """The picked aliases and branches, aliases first, branches in the tree's order."""
        names = [*self.alias_editor.names, *(b.name for b in self.branch_infos)]
        return [name for name in names if name in self._picked]

    def pick(self, *patterns: str) -> list[str]:
        """Pick the usable branches and aliases matching names or globs; returns all picked."""
        names = [*self.alias_editor.names, *(b.name for b in self.branch_infos)]
        usable = [name for name in names if self._usable(name)]
        for pattern in patterns:
            found = [name for name in usable if fnmatch.fnmatchcase(name, pattern)]
            if not found:
                msg = f"no usable branch or alias matches {pattern!r} in tree {self.tree!r}"
                raise KeyError(msg)
            self._picked.update(found)
        self._refresh_table()
        self._selection_changed()
        return self.picked

    def clear(self) -> None:
        """Unpick every branch."""
        self._picked.clear()
        self._refresh_table()
        self._selection_changed()

    # --- preview -------------------------------------------------------------------------

    def show_preview(self, branch: str, wait: bool = False) -> None:
        """Histogram ``branch`` over the opened files (the first ``preview_entries`` entries)."""
        tree = self.tree
        files = [f for f in self.files_opened if self.catalog and self.catalog.count(branch, [f])]

        def work() -> hist.Hist:
            # tree is None only while no catalog is loaded, and then files is empty
            return preview(files, cast(str, tree), branch, entry_stop=self.preview_entries)

        def done(histogram: hist.Hist) -> str:
            self.histogram, self.previewed = histogram, branch
            self.preview_image.value = histogram_png(histogram, f"{branch} ({tree})")
            return f"{branch}: {int(histogram.sum()):,} values"

        self.job.start(f"histogramming {branch}", work, done)
        if wait:
            self.job.wait()

    # --- labels and aliases --------------------------------------------------------------

    @property
    def classes(self) -> w.BoundedIntText:
        """The number of classes (the label editor's box)."""
        return self.label_editor.classes

    @property
    def label_rows(self) -> w.VBox:
        """One line per opened file: its class menu and its name."""
        return self.label_editor.rows

    @property
    def labels(self) -> dict[str, int | None]:
        """The class of each opened file (None: not used)."""
        return self.label_editor.labels

    @property
    def files(self) -> dict[int, list[str]]:
        """``{label: files}`` of the labelled files, labels in order."""
        return self.label_editor.files

    def set_label(self, paths: Any, label: int | None) -> None:
        """Put opened files (paths or globs) in class ``label`` (None: not used)."""
        self.label_editor.set_label(paths, label)

    def define_alias(self, name: str, expression: str, label: int | None = None) -> None:
        """Define the alias ``name`` for class ``label`` (None: every class), checked at once."""
        self.alias_editor.define(name, expression, label)

    @property
    def aliases(self) -> dict:
        """The aliases usable in every class, as `DataStream` takes them."""
        names = [n for n in self.alias_editor.names if self.alias_editor.status(n)[0]]
        if not names:
            return {}
        groups = self._files_in_use()
        if list(groups) == [None]:
            return {n: self.alias_editor.expression_for(None, n) for n in names}
        return {k: {n: self.alias_editor.expression_for(k, n) for n in names} for k in groups}

    def _check_alias(self, label: Any, name: str, expression: str) -> str:
        files = self._files_in_use().get(label) or self.files_opened
        if not files or self.tree is None:
            msg = "open files first"
            raise ValueError(msg)
        info = alias_info(files[0], self.tree, name, expression)
        if not info.supported:
            raise ValueError(info.reason)
        return f"{info.dtype}, {info.shape}"

    def _title_aliases(self) -> None:
        count = len(self.alias_editor.names)
        self.aliases_box.set_title(0, f"Aliases: computed features per class ({count} defined)")

    def _classes_changed(self) -> None:
        """Tell the alias editor which classes are in use (their first files check aliases)."""
        groups = self._files_in_use()
        choices = [] if list(groups) == [None] else [(f"class {k}", k) for k in groups]
        self.alias_editor.set_classes(choices)

    def _labels_changed(self) -> None:
        self._classes_changed()
        self._refresh_table()
        self._selection_changed()

    def _aliases_changed(self) -> None:
        self._title_aliases()
        self._picked &= {b.name for b in self.branch_infos} | set(self.alias_editor.names)
        self._refresh_table()
        self._selection_changed()

    # --- specs ---------------------------------------------------------------------------

    def _current(self, spec: FeatureSpec | None = None) -> Selection:
        if self.tree is None:
            msg = "open a file first (Browser.open or the Open button)"
            raise ValueError(msg)
        label = self.label_editor.per_event
        files: dict[int, list[str]] | list[str] = (
            list(self.files_opened) if label is not None else self.files
        )
        return Selection(
            files=files,
            tree=self.tree,
            branches=self.picked or self._default_branches(),
            max_len=self.max_len_box.value or None,
            cut=self.cut_box.value.strip() or None,
            spec=spec,
            aliases=self.aliases,
            label=label,
        )

    def _default_branches(self) -> list[str]:
        """Nothing picked: every supported branch when all files share a schema and there is
        no alias (the API's default, which leaves constants out); else every usable name."""
        names = [*self.alias_editor.names, *self._infos]
        if not self.alias_editor.names and all(self._presence(n)[1] for n in self._infos):
            return []
        return [name for name in names if self._usable(name)]

    @property
    def selection(self) -> Selection:
        """The current choice: labelled files, tree, picked branches, options and their specs."""
        current = self._current()
        if self.spec is not None and self._spec_for == current:
            return self._current(self.spec)
        return current

    def _selection_changed(self) -> None:
        if self.spec is None:
            return
        try:
            same = self._spec_for == self._current()
        except ValueError:
            same = False
        if not same:
            self.summary.value = (
                "<i>the selection changed since the specs were computed: compute them again</i>"
            )

    def compute_specs(self, wait: bool = False) -> None:
        """Compute the FeatureSpec of the selection (of all opened files when none is labelled)."""
        current = self._current()
        sources = current.files or self.files_opened

        def report(done: int, total: int) -> None:
            self.status.busy(f"computing specs: {done:,} of {total:,} events", done / total)

        def work() -> FeatureSpec:
            return compute_specs(
                sources,
                tree=current.tree,
                branches=current.branches or None,
                max_len=current.max_len,
                cut=current.cut,
                aliases=current.aliases or None,
                progress=False,
                on_progress=report,
                client=self.client,
            )

        def done(spec: FeatureSpec) -> str:
            self.spec, self._spec_for = spec, current
            self.summary.value = spec_html(spec)
            self._refresh_table()
            return f"specs: {spec.n_features} features, {spec.n_events:,} events"

        self.job.start("computing specs", work, done)
        if wait:
            self.job.wait()

    def to_stream(self, **kwargs: Any) -> DataStream:
        """A `DataStream` of the selection (reusing its specs); ``kwargs`` go to `DataStream`."""
        kwargs.setdefault("progress", False)
        kwargs.setdefault("client", self.client)
        return self.selection.to_stream(**kwargs)

    def wait(self, timeout: float | None = None) -> Any:
        """Wait for the running job (open, preview, specs); raise its error if it failed."""
        return self.job.wait(timeout)


def spec_html(spec: FeatureSpec) -> str:
    """The specs summary: counts, pad lengths of jagged branches, and the full table."""
    jagged = [f"{b.name} {b.pad}" for b in spec.branches if b.jagged]
    pads = f"; padded: {', '.join(jagged)}" if jagged else ""
    head = (
        f"<b>{spec.n_features} features</b> from {len(spec.branches)} branches, "
        f"{spec.n_events:,} events{html.escape(pads)}"
    )
    return f'{head}<pre style="font-size:11px;line-height:1.25">{html.escape(spec.summary())}</pre>'
