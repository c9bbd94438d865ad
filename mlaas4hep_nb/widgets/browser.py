"""Browser: open ROOT files, see their trees and branches, pick features and labels, get specs."""

from __future__ import annotations

import fnmatch
import html
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from ..paths import expand
from ..sources import branches as list_branches
from ..sources import list_trees, preview
from ..specs import cache_dir, compute_specs
from ._common import Job, Status, figure_png, image_box, new_figure
from .cluster import cluster_html

if TYPE_CHECKING:
    import hist

    from ..sources import BranchInfo, TreeInfo
    from ..specs import FeatureSpec
    from ..stream import DataStream

__all__ = ["Browser", "Selection"]

_MAX_RECENT = 12
_GLOB = set("*?[")


def __dir__() -> list[str]:
    return __all__


@dataclass(frozen=True)
class Selection:
    """What the Browser hands to code: labelled files, tree, branches, options and the specs.

    ``files`` maps each class (0..K-1) to its files; ``branches`` are in the
    tree's order (empty: every supported branch); ``spec`` is None until
    computed for exactly this selection.
    """

    files: dict[int, list[str]]
    tree: str
    branches: list[str] = field(default_factory=list)
    max_len: int | None = None
    cut: str | None = None
    spec: FeatureSpec | None = None

    def stream_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `DataStream` for this selection (all but the sources)."""
        kwargs: dict[str, Any] = {
            "tree": self.tree,
            "branches": self.branches or None,
            "max_len": self.max_len,
            "cut": self.cut,
        }
        if self.spec is not None:
            kwargs["specs"] = self.spec
        return kwargs

    def to_stream(self, **kwargs: Any) -> DataStream:
        """A `DataStream` over these files; ``kwargs`` add to or override the selection."""
        from ..stream import DataStream

        if len(self.files) < 2:
            have = f"only class {sorted(self.files)}" if self.files else "no labelled files"
            msg = (
                f"training needs files of at least two classes, and there are {have}: "
                "assign labels to the files (Browser labels editor, or Browser(labels=...))"
            )
            raise ValueError(msg)
        return DataStream(self.files, **{**self.stream_kwargs(), **kwargs})

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": {label: list(paths) for label, paths in self.files.items()},
            "tree": self.tree,
            "branches": list(self.branches),
            "max_len": self.max_len,
            "cut": self.cut,
            "spec": self.spec.to_dict() if self.spec is not None else None,
        }


def _recent_file() -> Path:
    return cache_dir().parent / "recent_paths.json"


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


def matches(name: str, pattern: str) -> bool:
    """A glob (``Jet_*``) matches the whole name; plain text matches any part, any case."""
    pattern = pattern.strip()
    if not pattern:
        return True
    if _GLOB & set(pattern):
        return fnmatch.fnmatchcase(name, pattern)
    return pattern.lower() in name.lower()


def histogram_png(histogram: hist.Hist, title: str) -> bytes:
    """A step plot of a one-dimensional histogram, as PNG bytes."""
    fig, ax = new_figure(5.0, 3.0)
    axis = histogram.axes[0]
    ax.stairs(histogram.values(), axis.edges, fill=True, alpha=0.6)
    ax.set(xlabel=axis.label or axis.name, ylabel="entries", title=title)
    ax.grid(alpha=0.3)
    return figure_png(fig)


class Browser:
    """Browse ROOT files, pick branches and labels, compute the FeatureSpec.

    A view over `mlaas4hep_nb.list_trees`, `branches`, `preview` and
    `compute_specs`: everything it shows comes from those calls, and every
    button has a method that code can call (`open`, `pick`, `set_label`,
    `show_preview`, `compute_specs`).

    Parameters
    ----------
    path : a path, URL, glob or a list of them to open at once; or
        ``{label: files}`` to open them with their labels set.
    tree : the tree to show first (default: the first one found).
    branches : names or globs to pick at once.
    labels : ``{label: files}`` assigning opened files to classes.
    max_len, cut : the options of `compute_specs`.
    client : a ``dask.distributed.Client``: specs and streams run on its workers
        (the panel links its dashboard).
    preview_entries : entries read for a branch preview.
    max_rows : branch rows shown at once (refine the filter to see others).

    Attributes
    ----------
    widget : the ipywidgets layout (displaying the Browser displays it).
    files_opened : every file opened, in order.
    trees : the `TreeInfo` of each tree in them.
    branch_infos : the `BranchInfo` of each branch of the current tree.
    spec : the `FeatureSpec` of the current selection, None until computed.
    histogram : the last previewed `hist.Hist`.
    """

    def __init__(
        self,
        path: Any = None,
        tree: str | None = None,
        branches: Sequence[str] | None = None,
        labels: Mapping[int, Any] | None = None,
        *,
        max_len: int | None = None,
        cut: str | None = None,
        preview_entries: int = 100_000,
        max_rows: int = 100,
        client: Any = None,
    ) -> None:
        self.client = client
        self.preview_entries = preview_entries
        self.max_rows = max_rows
        self.files_opened: list[str] = []
        self.trees: list[TreeInfo] = []
        self.branch_infos: list[BranchInfo] = []
        self.spec: FeatureSpec | None = None
        self.tree: str | None = None
        self._showing_trees = False
        self.histogram: hist.Hist | None = None
        self.previewed: str | None = None
        self._labels: dict[str, int | None] = {}
        self._picked: set[str] = set()
        self._pending_picks = list(branches or [])
        self._pending_tree = tree
        self._spec_for: Selection | None = None
        self.status = Status()
        self.job = Job(self.status)
        self._build(max_len, cut)
        if isinstance(path, Mapping):
            labels = {**path, **(labels or {})}
            path = [f for files in path.values() for f in expand(files)]
        self._pending_labels = dict(labels or {})
        if path is not None:
            self.open(path)

    # --- layout --------------------------------------------------------------------------

    def _build(self, max_len: int | None, cut: str | None) -> None:
        self.path_box = w.Text(
            placeholder="file, glob, root://host//path or https:// URL (several: space-separated)",
            layout=w.Layout(flex="1 1 auto"),
        )
        self.open_button = w.Button(description="Open", icon="folder-open", button_style="primary")
        self.recent = w.Dropdown(
            options=[("recent paths", "")] + [(p, p) for p in _load_recent()],
            layout=w.Layout(width="14em"),
        )
        self.tree_list = w.Select(options=[], rows=5, layout=w.Layout(width="100%"))
        self.filter_box = w.Text(placeholder="filter: Jet_* or pt", layout=w.Layout(width="14em"))
        self.pick_shown = w.Button(description="Pick shown", icon="check-square")
        self.clear_picks = w.Button(description="Clear", icon="square")
        self.picked_label = w.HTML()
        self.branch_table = w.GridBox(
            layout=w.Layout(
                grid_template_columns="2em minmax(8em, max-content) repeat(3, max-content)",
                grid_gap="0 1em",
                max_height="22em",
                overflow="auto",
                align_items="center",
            )
        )
        self.preview_image = image_box(max_width="420px")
        self.classes = w.BoundedIntText(
            value=2,
            min=2,
            max=50,
            description="classes",
            style={"description_width": "initial"},
            layout=w.Layout(width="9em"),
        )
        self.label_rows = w.VBox(layout=w.Layout(max_height="14em", overflow="auto"))
        self.max_len_box = w.BoundedIntText(
            value=max_len or 0,
            min=0,
            max=10_000,
            description="pad ≤",
            tooltip="pad jagged branches to at most this length (0: the longest seen)",
            layout=w.Layout(width="10em"),
        )
        self.cut_box = w.Text(
            value=cut or "",
            placeholder="cut, e.g. (nJet >= 4) & (MET_pt > 20)",
            layout=w.Layout(flex="1 1 auto"),
        )
        self.specs_button = w.Button(
            description="Compute specs", icon="calculator", button_style="success"
        )
        self.summary = w.HTML()
        self.cluster_line = w.HTML(cluster_html(self.client))

        self.open_button.on_click(lambda _: self.open(self.path_box.value.split()))
        self.recent.observe(self._recent_chosen, "value")
        self.tree_list.observe(self._tree_chosen, "value")
        self.filter_box.observe(lambda _: self._fill_table(), "value")
        self.pick_shown.on_click(lambda _: self.pick(*self.shown_branches()))
        self.clear_picks.on_click(lambda _: self.clear())
        self.classes.observe(lambda _: self._fill_labels(), "value")
        self.max_len_box.observe(lambda _: self._selection_changed(), "value")
        self.cut_box.observe(lambda _: self._selection_changed(), "value")
        self.specs_button.on_click(lambda _: self.compute_specs())

        def section(title: str, *children: w.Widget, **layout: Any) -> w.VBox:
            return w.VBox([w.HTML(f"<b>{title}</b>"), *children], layout=w.Layout(**layout))

        self.widget = w.VBox(
            [
                w.HBox([self.path_box, self.open_button, self.recent]),
                w.HBox(
                    [
                        section("Trees", self.tree_list, width="45%"),
                        section("Labels", self.classes, self.label_rows, width="55%"),
                    ]
                ),
                w.HBox(
                    [
                        section(
                            "Branches",
                            w.HBox([self.filter_box, self.pick_shown, self.clear_picks]),
                            self.picked_label,
                            self.branch_table,
                            width="60%",
                        ),
                        section("Preview (click a branch name)", self.preview_image, width="40%"),
                    ]
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
        items = [path] if isinstance(path, (str, os.PathLike)) else list(path)
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
            self._labels = {f: self._labels.get(f) for f in files}
            for label, group in self._pending_labels.items():
                for f in expand(group):
                    self._labels[f] = int(label)
            self._pending_labels = {}
            used = [label for label in self._labels.values() if label is not None]
            if used:
                self.classes.value = max(self.classes.value, max(used) + 1)
            self._remember(shown)
            self._fill_labels()
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
        infos = list_branches(self.files_opened, tree) if tree is not None else []
        self.tree = tree
        self.branch_infos = infos
        names = {b.name for b in infos}
        self._picked &= names
        if self._pending_picks:
            patterns, self._pending_picks = self._pending_picks, []
            self.pick(*patterns)
        self._selection_changed()
        self._fill_table()

    # --- branches ------------------------------------------------------------------------

    def shown_branches(self) -> list[str]:
        """The supported branches the filter lets through, in the tree's order."""
        pattern = self.filter_box.value
        return [b.name for b in self.branch_infos if b.supported and matches(b.name, pattern)]

    def _fill_table(self) -> None:
        pattern = self.filter_box.value
        rows = [b for b in self.branch_infos if matches(b.name, pattern)]
        cells: list[w.Widget] = [
            w.HTML(f"<b>{title}</b>") for title in ("", "branch", "type", "shape", "usable")
        ]
        for info in rows[: self.max_rows]:
            cells.extend(self._row(info))
        self.branch_table.children = cells
        hidden = len(rows) - self.max_rows
        more = f"; {hidden} more match, refine the filter to see them" if hidden > 0 else ""
        self._update_picked_label(more)

    def _row(self, info: BranchInfo) -> list[w.Widget]:
        box = w.Checkbox(
            value=info.name in self._picked,
            disabled=not info.supported,
            indent=False,
            layout=w.Layout(width="2em"),
        )
        box.observe(lambda change, name=info.name: self._toggle(name, change["new"]), "value")
        button = w.Button(
            description=info.name,
            tooltip=f"{info.title or info.name}: click for a histogram",
            layout=w.Layout(width="auto", height="1.9em"),
        )
        button.add_class("mlaas4hep-branch")
        button.on_click(lambda _, name=info.name: self.show_preview(name))
        usable = (
            "✓"
            if info.supported
            else f'<span style="color:#c62828">✗ {html.escape(info.reason or "")}</span>'
        )
        return [
            box,
            button,
            w.HTML(html.escape(f"{info.typename} ({info.dtype})" if info.dtype else info.typename)),
            w.HTML(info.shape),
            w.HTML(usable),
        ]

    def _toggle(self, name: str, on: bool) -> None:
        if on:
            self._picked.add(name)
        else:
            self._picked.discard(name)
        self._update_picked_label()
        self._selection_changed()

    def _update_picked_label(self, more: str = "") -> None:
        picked = self.picked
        text = (
            f"{len(picked)} picked: {', '.join(picked)}"
            if picked
            else "none picked: the specs take every supported branch"
        )
        self.picked_label.value = f"<small>{html.escape(text + more)}</small>"

    @property
    def picked(self) -> list[str]:
        """The picked branches, in the tree's order."""
        return [b.name for b in self.branch_infos if b.name in self._picked]

    def pick(self, *patterns: str) -> list[str]:
        """Pick the supported branches matching names or globs; returns all picked."""
        usable = [b.name for b in self.branch_infos if b.supported]
        for pattern in patterns:
            found = [name for name in usable if fnmatch.fnmatchcase(name, pattern)]
            if not found:
                msg = f"no supported branch matches {pattern!r} in tree {self.tree!r}"
                raise KeyError(msg)
            self._picked.update(found)
        self._sync_checkboxes()
        return self.picked

    def clear(self) -> None:
        """Unpick every branch."""
        self._picked.clear()
        self._sync_checkboxes()

    def _sync_checkboxes(self) -> None:
        cells = self.branch_table.children
        for box, button in zip(cells[5::5], cells[6::5], strict=False):
            box.value = button.description in self._picked
        self._update_picked_label()
        self._selection_changed()

    # --- preview -------------------------------------------------------------------------

    def show_preview(self, branch: str, wait: bool = False) -> None:
        """Histogram ``branch`` over the opened files (the first ``preview_entries`` entries)."""
        tree = self.tree

        def work() -> hist.Hist:
            return preview(self.files_opened, tree, branch, entry_stop=self.preview_entries)

        def done(histogram: hist.Hist) -> str:
            self.histogram, self.previewed = histogram, branch
            self.preview_image.value = histogram_png(histogram, f"{branch} ({tree})")
            return f"{branch}: {int(histogram.sum()):,} values"

        self.job.start(f"histogramming {branch}", work, done)
        if wait:
            self.job.wait()

    # --- labels --------------------------------------------------------------------------

    def class_names(self) -> list[str]:
        """Names of the classes: background and signal for two, else their numbers."""
        if self.classes.value == 2:
            return ["0: background", "1: signal"]
        return [str(k) for k in range(self.classes.value)]

    def _fill_labels(self) -> None:
        options = [("not used", None)] + [(n, k) for k, n in enumerate(self.class_names())]
        rows = []
        for path, label in self._labels.items():
            if label is not None and label >= self.classes.value:
                self._labels[path] = label = None
            menu = w.Dropdown(options=options, value=label, layout=w.Layout(width="11em"))
            menu.observe(lambda change, p=path: self._set(p, change["new"]), "value")
            name = w.HTML(
                f'<span title="{html.escape(path)}">{html.escape(os.path.basename(path))}</span>'
            )
            rows.append(w.HBox([menu, name]))
        self.label_rows.children = rows

    def _set(self, path: str, label: int | None) -> None:
        self._labels[path] = label
        self._selection_changed()

    @property
    def labels(self) -> dict[str, int | None]:
        """The class of each opened file (None: not used)."""
        return dict(self._labels)

    def set_label(self, paths: Any, label: int | None) -> None:
        """Put opened files (paths or globs) in class ``label`` (None: not used)."""
        items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        for item in items:
            pattern = os.fspath(item)
            found = [f for f in self._labels if f == pattern or fnmatch.fnmatchcase(f, pattern)]
            if not found:
                msg = f"{pattern!r} is none of the opened files: {list(self._labels)}"
                raise KeyError(msg)
            if label is not None and label >= self.classes.value:
                self.classes.value = label + 1
            for f in found:
                self._labels[f] = label
        self._fill_labels()
        self._selection_changed()

    @property
    def files(self) -> dict[int, list[str]]:
        """``{label: files}`` of the labelled files, labels in order."""
        grouped: dict[int, list[str]] = {}
        for path, label in self._labels.items():
            if label is not None:
                grouped.setdefault(label, []).append(path)
        return dict(sorted(grouped.items()))

    # --- specs ---------------------------------------------------------------------------

    def _current(self, spec: FeatureSpec | None = None) -> Selection:
        if self.tree is None:
            msg = "open a file first (Browser.open or the Open button)"
            raise ValueError(msg)
        return Selection(
            files=self.files,
            tree=self.tree,
            branches=self.picked,
            max_len=self.max_len_box.value or None,
            cut=self.cut_box.value.strip() or None,
            spec=spec,
        )

    @property
    def selection(self) -> Selection:
        """The current choice: labelled files, tree, picked branches, options and their specs."""
        current = self._current()
        if self.spec is not None and self._spec_for == current:
            return self._current(self.spec)
        return current

    def _selection_changed(self) -> None:
        if self.spec is not None and (self.tree is None or self._spec_for != self._current()):
            self.summary.value = (
                "<i>the selection changed since the specs were computed: compute them again</i>"
            )

    def compute_specs(self, wait: bool = False) -> None:
        """Compute the FeatureSpec of the selection (of all opened files when none is labelled)."""
        current = self._current()
        files = current.files or self.files_opened

        def report(done: int, total: int) -> None:
            self.status.busy(f"computing specs: {done:,} of {total:,} events", done / total)

        def work() -> FeatureSpec:
            return compute_specs(
                files,
                tree=current.tree,
                branches=current.branches or None,
                max_len=current.max_len,
                cut=current.cut,
                progress=False,
                on_progress=report,
                client=self.client,
            )

        def done(spec: FeatureSpec) -> str:
            self.spec, self._spec_for = spec, current
            self.summary.value = spec_html(spec)
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
