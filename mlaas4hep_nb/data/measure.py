"""compute_specs: measure the selected branches of the files in one vectorised pass."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import numbers
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import awkward as ak
import numpy as np

from ..errors import EmptyDataError, SkippedBranchWarning, warn_user
from .convert import flat_values, jagged_parts
from .defaults import DEFAULT_CHUNK_SIZE
from .expressions import cut_symbols
from .handles import OpenFiles
from .parallel import map_ordered
from .paths import PathLike, expand
from .plan import file_units
from .progress import progress_bar
from .reader import NAMES_PER_READ, close_file, read_passing
from .rootio import Column
from .scan import (
    DEFAULT_EXCLUDE,
    Aliases,
    FileMeta,
    aliases_by_file,
    exact_names,
    scan,
    select,
)
from .spec import CONSTANT, SPEC_VERSION, BranchSpec, FeatureSpec, cache_dir, constant_reason

if TYPE_CHECKING:
    from distributed import Client
    from numpy.typing import NDArray

__all__ = ["check_max_len", "compute_specs", "file_partial"]

#: Part of the cache key: raised when the same files and selection give another spec
#: (3: constant branches are left out of the default selection and of globs).
_SPEC_RULES = 3


def __dir__() -> list[str]:
    return __all__


# --- the statistics pass ------------------------------------------------------------


def _moments(values: NDArray[np.float64], max_multiplicity: int) -> dict[str, Any]:
    finite = values[np.isfinite(values)]
    part: dict[str, Any] = {
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


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Combine two partial statistics exactly (Chan et al.'s parallel variance)."""
    n = a["count"] + b["count"]
    merged: dict[str, Any] = {
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


def _column_partial(column: Column, array: ak.Array, cap: int | None) -> dict[str, Any]:
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
    step: int = DEFAULT_CHUNK_SIZE,
    on_progress: Callable[[int], None] | None = None,
    open_files: OpenFiles | None = None,
) -> dict[str, Any]:
    """Partial statistics of one file: events passing the cut and per-branch moments.

    The file is read ``step`` entries at a time, or a whole cluster where one
    is longer (it is decompressed once), a few columns at a time: a read
    holds at most about ``step`` x `NAMES_PER_READ` values. With
    ``open_files``, the file is read through the handle kept there.
    """
    where = f"{meta.path}:{tree}"
    cut_names = cut_symbols(cut, list(meta.columns), where) if cut else []
    partial: dict[str, Any] = {"events": 0, "branches": {}}
    read = functools.partial(read_passing, meta.path, tree, aliases=aliases, open_files=open_files)
    try:
        for unit in file_units(0, meta.path, meta.entries, meta.clusters, step, cut=False):
            _, entries = read([], unit.start, unit.stop, cut=cut, cut_names=cut_names)
            passed = None
            if cut:
                passed = np.zeros(unit.size, dtype=bool)
                passed[entries - unit.start] = True
            partial["events"] += len(entries)
            per_read = max(1, NAMES_PER_READ * step // unit.size)
            for first in range(0, len(selected), per_read):
                columns = selected[first : first + per_read]
                arrays, _ = read([c.name for c in columns], unit.start, unit.stop)
                for column in columns:
                    array = arrays.pop(column.name)
                    array = array if passed is None else array[passed]
                    part = _column_partial(column, array, caps[column.name])
                    seen = partial["branches"].get(column.name)
                    partial["branches"][column.name] = part if seen is None else _merge(seen, part)
            if on_progress is not None:
                on_progress(unit.size)
    finally:
        if open_files is None:
            # the pass keeps no file open: a Dask worker's thread would hold it for the
            # stream's reads (a file replaced or removed meanwhile would go unnoticed)
            close_file(meta.path)
    return partial


def _branch_spec(column: Column, stats: dict[str, Any], cap: int | None) -> BranchSpec:
    longest = stats["max_multiplicity"] if column.depth else 1
    pad = min(longest, cap) if (column.depth and cap is not None) else longest
    std = math.sqrt(stats["m2"] / stats["count"]) if stats["count"] else None
    return BranchSpec(
        name=column.name,
        dtype=cast(str, column.dtype),  # a selected column is supported: it has a dtype
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


def _caps(
    selected: Sequence[Column], max_len: int | Mapping[str, int] | None
) -> dict[str, int | None]:
    if isinstance(max_len, Mapping):
        unknown = set(max_len) - {c.name for c in selected}
        if unknown:
            msg = f"max_len names branches that are not selected: {sorted(unknown)}"
            raise ValueError(msg)
        return {c.name: max_len.get(c.name) for c in selected}
    return {c.name: max_len for c in selected}


def _fingerprint(files: Sequence[str], open_files: OpenFiles, **selection: Any) -> str:
    identities = list(map_ordered(open_files.identity, files))
    blob = json.dumps(
        {"version": SPEC_VERSION, "rules": _SPEC_RULES, "files": identities, **selection},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _expanded(files: PathLike | Mapping[int, PathLike]) -> dict[int, list[str]] | list[str]:
    if isinstance(files, Mapping):
        return {label: expand(group) for label, group in files.items()}
    return expand(files)


def compute_specs(
    files: PathLike | Mapping[int, PathLike],
    tree: str = "Events",
    branches: Sequence[str] | None = None,
    exclude: Sequence[str] = DEFAULT_EXCLUDE,
    max_len: int | Mapping[str, int] | None = None,
    cut: str | None = None,
    *,
    aliases: Aliases | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    cache: bool = True,
    progress: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
    client: Client | None = None,
    open_files: OpenFiles | None = None,
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
    chunk_size : entries of a file read at a time (whole clusters where they are
        no longer); bounds memory, as `DataStream`'s (which passes its own).
    cache : reuse a spec computed before for the very same files and selection.
    progress : show a progress bar (tqdm: a widget in notebooks, text in terminals).
    on_progress : called as ``on_progress(entries_done, entries_total)`` as files are
        read, from whichever thread reads them (for widgets and other views).
    client : a ``dask.distributed.Client`` to compute per-file statistics on a cluster.
    open_files : the open files and remote sizes to reuse and add to (a `DataStream`
        passes its own, which its scan filled); by default, new ones for this call.
    """
    check_max_len(max_len)
    if chunk_size < 1:
        msg = f"chunk_size must be positive, not {chunk_size}"
        raise ValueError(msg)
    if open_files is None:
        with contextlib.closing(OpenFiles()) as own:  # a DataStream passes its own
            return compute_specs(
                files,
                tree,
                branches,
                exclude,
                max_len,
                cut=cut,
                aliases=aliases,
                chunk_size=chunk_size,
                cache=cache,
                progress=progress,
                on_progress=on_progress,
                client=client,
                open_files=own,
            )
    groups = _expanded(files)
    paths = [p for ps in groups.values() for p in ps] if isinstance(groups, dict) else groups
    alias_map = aliases_by_file(groups, aliases)
    exclude = tuple(exclude)
    key = None
    if cache:
        key = _fingerprint(
            paths,
            open_files,
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
    metas = scan(paths, tree, alias_map, open_files=open_files)
    selected, skipped = select(metas, tree, branches, exclude)
    caps = _caps(selected, max_len)
    partials = _partials(
        metas,
        tree,
        selected,
        cut,
        caps,
        alias_map,
        chunk_size,
        progress,
        on_progress,
        client,
        open_files,
    )
    total: dict[str, Any] = {"events": 0, "branches": {}}
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
    constant = {b.name: constant_reason(b) for b in measured if b.constant and b.name not in exact}
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
    constant = {n: why for n, why in spec.skipped.items() if why.startswith(CONSTANT)}
    if constant:
        listed = "; ".join(f"{name} ({why})" for name, why in constant.items())
        warn_user(
            f"left out {len(constant)} constant branch(es), which min-max would map to 0: "
            f"{listed} (listed in spec.skipped; name one exactly to keep it)",
            SkippedBranchWarning,
        )


def _partials(
    metas: Sequence[FileMeta],
    tree: str,
    selected: Sequence[Column],
    cut: str | None,
    caps: Mapping[str, int | None],
    alias_map: Mapping[str, Mapping[str, str]],
    step: int,
    progress: bool,
    on_progress: Callable[[int, int], None] | None,
    client: Client | None,
    open_files: OpenFiles,
) -> list[dict[str, Any]]:
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
            from ..dask import map_partials

            on_worker = functools.partial(
                _file_partial_of, tree, selected, cut, caps, alias_map, step
            )
            return map_partials(client, on_worker, metas, [m.entries for m in metas], advance)

        local = functools.partial(
            _file_partial_of,
            tree,
            selected,
            cut,
            caps,
            alias_map,
            step,
            on_progress=advance,
            open_files=open_files,
        )
        # two files at a time: decompression releases the GIL; merged in file order
        return list(map_ordered(local, metas, max_workers=2))


def _file_partial_of(
    tree: str,
    selected: Sequence[Column],
    cut: str | None,
    caps: Mapping[str, int | None],
    alias_map: Mapping[str, Mapping[str, str]],
    step: int,
    meta: FileMeta,
    on_progress: Callable[[int], None] | None = None,
    open_files: OpenFiles | None = None,
) -> dict[str, Any]:
    """`file_partial` of one file with its aliases (a Dask worker passes neither keyword)."""
    return file_partial(
        meta,
        tree,
        selected,
        cut,
        caps,
        alias_map.get(meta.path),
        step,
        on_progress=on_progress,
        open_files=open_files,
    )
