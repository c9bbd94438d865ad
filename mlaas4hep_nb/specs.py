"""FeatureSpec: what each selected branch becomes as features, and compute_specs to measure it."""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import awkward as ak
import numpy as np

from .convert import flat_values, jagged_parts
from .errors import EmptyDataError, SkippedBranchWarning, warn_user
from .expressions import cut_symbols, evaluate_cut, read_with_aliases
from .parallel import map_ordered
from .paths import PathLike, expand, file_identity
from .progress import progress_bar
from .rootio import Column, open_tree, shape_name
from .selection import DEFAULT_EXCLUDE, FileMeta, aliases_by_file, exact_names, scan, select

__all__ = ["BranchSpec", "FeatureSpec", "cache_dir", "check_max_len", "compute_specs"]

SPEC_VERSION = 1
#: Part of the cache key: raised when the same files and selection give another spec
#: (3: constant branches are left out of the default selection and of globs).
_SPEC_RULES = 3
_CONSTANT = "constant: "  # how spec.skipped explains a constant branch left out
_SPEC_CHUNK = 100_000


def __dir__() -> list[str]:
    return __all__


@dataclass(frozen=True)
class BranchSpec:
    """One branch: flat or jagged, its pad length and the statistics of its finite values.

    A fixed-size array branch (``float[3]``) is not jagged: ``fixed`` is its
    length and ``pad`` the number of its values kept (all of them, or ``max_len``).
    """

    name: str
    dtype: str
    jagged: bool
    pad: int
    max_multiplicity: int
    count: int
    nonfinite: int
    min: float | None
    max: float | None
    mean: float | None
    std: float | None
    fixed: int | None = None

    @property
    def shape(self) -> str:
        """``"flat"``, ``"jagged"`` or ``"fixed[n]"``."""
        return shape_name(self.jagged, self.fixed)

    @property
    def constant(self) -> bool:
        """True when every finite value is the same, or there is none: no use as a feature."""
        return self.min is None or self.min == self.max

    @property
    def features(self) -> list[str]:
        if not self.jagged and self.fixed is None:
            return [self.name]
        return [f"{self.name}_{i}" for i in range(self.pad)]


@dataclass(frozen=True)
class FeatureSpec:
    """The feature layout of a selection: branches in order, each with its statistics."""

    tree: str
    branches: tuple[BranchSpec, ...]
    cut: str | None = None
    n_events: int = 0
    files: tuple[str, ...] = ()
    skipped: Mapping[str, str] = field(default_factory=dict)
    fingerprint: str | None = None

    @property
    def features(self) -> list[str]:
        """Feature names: ``MET_pt``, ``Jet_pt_0`` ... ``Jet_pt_{pad-1}``."""
        return [name for branch in self.branches for name in branch.features]

    @property
    def n_features(self) -> int:
        return sum(branch.pad for branch in self.branches)

    @property
    def constants(self) -> dict[str, str]:
        """Constant branches, kept (named exactly) or left out, each with why."""
        found = {n: why for n, why in self.skipped.items() if why.startswith(_CONSTANT)}
        found.update({b.name: _constant_reason(b) for b in self.branches if b.constant})
        return found

    def branch(self, name: str) -> BranchSpec:
        for branch in self.branches:
            if branch.name == name:
                return branch
        msg = f"no branch {name!r} in this FeatureSpec; it has {[b.name for b in self.branches]}"
        raise KeyError(msg)

    def to_dict(self) -> dict:
        return {
            "version": SPEC_VERSION,
            "tree": self.tree,
            "cut": self.cut,
            "n_events": self.n_events,
            "files": list(self.files),
            "skipped": dict(self.skipped),
            "fingerprint": self.fingerprint,
            "features": self.features,
            "branches": [asdict(branch) for branch in self.branches],
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> FeatureSpec:
        if data.get("version") != SPEC_VERSION:
            msg = f"FeatureSpec version {data.get('version')!r} is not {SPEC_VERSION}"
            raise ValueError(msg)
        return cls(
            tree=data["tree"],
            branches=tuple(BranchSpec(**branch) for branch in data["branches"]),
            cut=data.get("cut"),
            n_events=data.get("n_events", 0),
            files=tuple(data.get("files", ())),
            skipped=dict(data.get("skipped", {})),
            fingerprint=data.get("fingerprint"),
        )

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> FeatureSpec:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def summary(self) -> str:
        """A text table: one row per branch, the name column as wide as the longest name.

        A constant branch (kept because it was named exactly) is flagged ``constant``.
        """
        name_width = max([len("branch"), *(len(b.name) for b in self.branches)])
        shape_width = max([len("jagged"), *(len(b.shape) for b in self.branches)])
        head = (
            f"{'branch':<{name_width}} {'kind':<{shape_width}} {'pad':>4} "
            f"{'min':>11} {'max':>11} {'mean':>11} {'std':>11} {'nan/inf':>7}"
        )
        rows = [head, "-" * len(head)]
        for b in self.branches:
            stats = " ".join(
                f"{v:>11.4g}" if v is not None else f"{'-':>11}"
                for v in (b.min, b.max, b.mean, b.std)
            )
            where = f"{b.name:<{name_width}} {b.shape:<{shape_width}} {b.pad:>4}"
            note = "  constant" if b.constant else ""
            rows.append(f"{where} {stats} {b.nonfinite:>7}{note}")
        rows.append(
            f"{self.n_features} features from {len(self.branches)} branches, "
            f"{self.n_events} events in {len(self.files)} files"
        )
        rows.extend(f"skipped {name}: {why}" for name, why in self.skipped.items())
        return "\n".join(rows)


def cache_dir() -> Path:
    """Where specs are cached: ``$MLAAS4HEP_NB_CACHE`` or ``~/.cache/mlaas4hep_nb``."""
    base = os.environ.get("MLAAS4HEP_NB_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mlaas4hep_nb"
    )
    return Path(base) / "specs"


# --- the statistics pass ------------------------------------------------------------


def _moments(values: np.ndarray, max_multiplicity: int) -> dict:
    finite = values[np.isfinite(values)]
    part = {
        "count": int(finite.size),
        "nonfinite": int(values.size - finite.size),
        "max_multiplicity": int(max_multiplicity),
        "min": None,
        "max": None,
        "mean": 0.0,
        "m2": 0.0,
    }
    if finite.size:
        mean = float(finite.mean())
        part.update(
            min=float(finite.min()),
            max=float(finite.max()),
            mean=mean,
            m2=float(np.square(finite - mean).sum()),
        )
    return part


def _merge(a: dict, b: dict) -> dict:
    """Combine two partial statistics exactly (Chan et al.'s parallel variance)."""
    n = a["count"] + b["count"]
    merged = {
        "count": n,
        "nonfinite": a["nonfinite"] + b["nonfinite"],
        "max_multiplicity": max(a["max_multiplicity"], b["max_multiplicity"]),
        "min": min((v for v in (a["min"], b["min"]) if v is not None), default=None),
        "max": max((v for v in (a["max"], b["max"]) if v is not None), default=None),
    }
    if n == 0:
        return {**merged, "mean": 0.0, "m2": 0.0}
    delta = b["mean"] - a["mean"]
    merged["mean"] = a["mean"] + delta * b["count"] / n
    merged["m2"] = a["m2"] + b["m2"] + delta * delta * a["count"] * b["count"] / n
    return merged


def _column_partial(column: Column, array: ak.Array, cap: int | None) -> dict:
    if column.depth == 0:
        return _moments(np.asarray(flat_values(array), dtype=np.float64), 1)
    if column.fixed is not None:
        values = flat_values(array).reshape(len(array), -1)[:, :cap]
        return _moments(np.asarray(values, dtype=np.float64).ravel(), column.fixed)
    counts, starts, content = jagged_parts(array)
    longest = int(counts.max()) if counts.size else 0
    if cap is not None and longest > cap:
        local = np.arange(content.size) - np.repeat(starts, counts)
        content = content[local < cap]
    return _moments(np.asarray(content, dtype=np.float64), longest)


def file_partial(
    meta: FileMeta,
    tree: str,
    selected: Sequence[Column],
    cut: str | None,
    caps: Mapping[str, int | None],
    aliases: Mapping[str, str] | None = None,
    step: int = _SPEC_CHUNK,
    on_progress=None,
) -> dict:
    """Partial statistics of one file: events passing the cut and per-branch moments."""
    where = f"{meta.path}:{tree}"
    names = [column.name for column in selected]
    cut_names = cut_symbols(cut, list(meta.columns), where) if cut else []
    read_names = list(dict.fromkeys(names + cut_names))
    handle = open_tree(meta.path, tree)
    partial: dict = {"events": 0, "branches": {}}
    for start in range(0, meta.entries, step):
        stop = min(start + step, meta.entries)
        arrays = read_with_aliases(handle, read_names, start, stop, aliases or {}, where)
        if cut:
            passed = evaluate_cut(cut, arrays, where)
            arrays = {name: arrays[name][passed] for name in names}
        partial["events"] += len(arrays[names[0]])
        for column in selected:
            part = _column_partial(column, arrays[column.name], caps[column.name])
            seen = partial["branches"].get(column.name)
            partial["branches"][column.name] = part if seen is None else _merge(seen, part)
        if on_progress is not None:
            on_progress(stop - start)
    return partial


def _branch_spec(column: Column, stats: dict, cap: int | None) -> BranchSpec:
    longest = stats["max_multiplicity"] if column.depth else 1
    pad = min(longest, cap) if (column.depth and cap is not None) else longest
    std = math.sqrt(stats["m2"] / stats["count"]) if stats["count"] else None
    return BranchSpec(
        name=column.name,
        dtype=column.dtype,
        jagged=column.jagged,
        pad=int(pad),
        max_multiplicity=int(longest),
        count=stats["count"],
        nonfinite=stats["nonfinite"],
        min=stats["min"],
        max=stats["max"],
        mean=stats["mean"] if stats["count"] else None,
        std=std,
        fixed=column.fixed,
    )


def check_max_len(max_len: int | Mapping[str, int] | None) -> None:
    """Raise ValueError unless ``max_len`` is None, an int >= 1 or ``{branch: int >= 1 | None}``.

    0 is refused too: it would silently leave a jagged branch without features
    (leave a branch out with ``exclude`` instead).
    """
    given = max_len.items() if isinstance(max_len, Mapping) else [(None, max_len)]
    for name, value in given:
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            where = "" if name is None else f" for branch {name!r}"
            msg = (
                f"max_len{where} must be a whole number >= 1 (None: no cap), not {value!r}; "
                "to leave a branch out, use exclude"
            )
            raise ValueError(msg)


def _caps(selected: Sequence[Column], max_len: int | Mapping[str, int] | None) -> dict:
    if isinstance(max_len, Mapping):
        unknown = set(max_len) - {c.name for c in selected}
        if unknown:
            msg = f"max_len names branches that are not selected: {sorted(unknown)}"
            raise ValueError(msg)
        return {c.name: max_len.get(c.name) for c in selected}
    return {c.name: max_len for c in selected}


def _fingerprint(files: Sequence[str], **selection) -> str:
    identities = list(map_ordered(file_identity, files))
    blob = json.dumps(
        {"version": SPEC_VERSION, "rules": _SPEC_RULES, "files": identities, **selection},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _expanded(files: PathLike | Mapping) -> dict | list[str]:
    if isinstance(files, Mapping):
        return {label: expand(group) for label, group in files.items()}
    return expand(files)


def compute_specs(
    files: PathLike | Mapping,
    tree: str = "Events",
    branches: Sequence[str] | None = None,
    exclude: Sequence[str] = DEFAULT_EXCLUDE,
    max_len: int | Mapping[str, int] | None = None,
    cut: str | None = None,
    *,
    aliases: Mapping | None = None,
    cache: bool = True,
    progress: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
    client=None,
) -> FeatureSpec:
    """Measure the selected branches over all files in one vectorised pass.

    Parameters
    ----------
    files : a path, URL, glob, list of them, or ``{label: files}``.
    tree : the TTree or RNTuple name (``dir/name`` when nested).
    branches : names or glob patterns, in the order the features should take;
        None selects every supported branch in the tree's order.
    exclude : patterns left out of globs and of the default selection.
    max_len : cap on the pad length of jagged (and fixed-size array) branches, one
        int or ``{branch: int}``, each at least 1; None: no cap.
    cut : an uproot cut expression; statistics cover only the events that pass.
    aliases : computed columns ``{name: expression}`` (uproot expressions, with
        ``sum``/``max``/``any``/... reducing jagged values per event), or
        ``{label: {name: expression}}`` to map samples with other schemas onto
        the same features (``files`` must then be ``{label: files}``).
    cache : reuse a spec computed before for the very same files and selection.
    progress : show a progress bar (tqdm: a widget in notebooks, text in terminals).
    on_progress : called as ``on_progress(entries_done, entries_total)`` as files are
        read, from whichever thread reads them (for widgets and other views).
    client : a ``dask.distributed.Client`` to compute per-file statistics on a cluster.
    """
    check_max_len(max_len)
    groups = _expanded(files)
    paths = [p for ps in groups.values() for p in ps] if isinstance(groups, dict) else groups
    alias_map = aliases_by_file(groups, aliases)
    exclude = tuple(exclude)
    key = None
    if cache:
        key = _fingerprint(
            paths,
            tree=tree,
            branches=branches,
            exclude=exclude,
            max_len=max_len,
            cut=cut,
            aliases=[alias_map.get(p) for p in paths],
        )
        cached = cache_dir() / f"{key}.json"
        if cached.exists():
            spec = FeatureSpec.load(cached)
            _warn_constant(spec)
            return spec
    metas = scan(paths, tree, alias_map)
    selected, skipped = select(metas, tree, branches, exclude)
    caps = _caps(selected, max_len)
    partials = _partials(metas, tree, selected, cut, caps, alias_map, progress, on_progress, client)
    total: dict = {"events": 0, "branches": {}}
    for partial in partials:
        total["events"] += partial["events"]
        for name, part in partial["branches"].items():
            seen = total["branches"].get(name)
            total["branches"][name] = part if seen is None else _merge(seen, part)
    if total["events"] == 0:
        where = "the cut " + repr(cut) if cut else "the tree"
        msg = f"{where} leaves no events in {len(paths)} file(s) of tree {tree!r}"
        raise EmptyDataError(msg)
    measured = [_branch_spec(c, total["branches"][c.name], caps[c.name]) for c in selected]
    kept = _without_constants(measured, branches, skipped, tree)
    spec = FeatureSpec(
        tree=tree,
        branches=kept,
        cut=cut,
        n_events=total["events"],
        files=tuple(paths),
        skipped=skipped,
        fingerprint=key,
    )
    if key is not None:
        spec.save(cache_dir() / f"{key}.json")
    _warn_constant(spec)
    return spec


def _constant_reason(branch: BranchSpec) -> str:
    """Why a constant branch is left out, for ``spec.skipped``."""
    if branch.min is None:
        return _CONSTANT + "no finite value"
    return _CONSTANT + f"every value is {branch.min:g}"


def _without_constants(
    measured: Sequence[BranchSpec],
    branches: Sequence[str] | str | None,
    skipped: dict[str, str],
    tree: str,
) -> tuple[BranchSpec, ...]:
    """The branches but the constant ones not named exactly (those go to ``skipped``).

    Statistics exist only after the pass over the files, so this comes after
    the selection: min-max would map a constant branch to 0 for every event.
    """
    exact = exact_names(branches)
    constant = {b.name: _constant_reason(b) for b in measured if b.constant and b.name not in exact}
    if constant and len(constant) == len(measured):
        listed = "; ".join(f"{name} ({why})" for name, why in constant.items())
        msg = (
            f"every selected branch of tree {tree!r} is constant: {listed}; "
            "select other branches, or name one exactly to keep it"
        )
        raise EmptyDataError(msg)
    skipped.update(constant)
    return tuple(b for b in measured if b.name not in constant)


def _warn_constant(spec: FeatureSpec) -> None:
    """One SkippedBranchWarning listing the constant branches the spec left out, if any."""
    constant = {n: why for n, why in spec.skipped.items() if why.startswith(_CONSTANT)}
    if constant:
        listed = "; ".join(f"{name} ({why})" for name, why in constant.items())
        warn_user(
            f"left out {len(constant)} constant branch(es), which min-max would map to 0: "
            f"{listed} (listed in spec.skipped; name one exactly to keep it)",
            SkippedBranchWarning,
        )


def _partials(
    metas, tree, selected, cut, caps, alias_map, progress, on_progress, client
) -> list[dict]:
    total = sum(meta.entries for meta in metas)
    done = 0
    lock = threading.Lock()
    with progress_bar(total, "specs", enabled=progress) as bar:

        def advance(entries: int) -> None:
            nonlocal done
            with lock:
                done += entries
                bar.update(entries)
                if on_progress is not None:
                    on_progress(done, total)

        if client is not None:
            from .distributed import map_partials

            return map_partials(client, metas, tree, selected, cut, caps, alias_map, advance)

        def partial(meta: FileMeta) -> dict:
            return file_partial(
                meta, tree, selected, cut, caps, alias_map.get(meta.path), on_progress=advance
            )

        # two files at a time: decompression releases the GIL; merged in file order
        return list(map_ordered(partial, metas, max_workers=2))
