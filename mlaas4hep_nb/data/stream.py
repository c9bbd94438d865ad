"""DataStream: ROOT files and labels in, shuffled chunks of (X, mask, y) out."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Generator, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from ..errors import EmptyDataError, SchemaError, SourceError, warn_user
from .cache import UnitCache, cache_mode
from .defaults import DEFAULT_BATCH_SIZE, DEFAULT_CHUNK_SIZE
from .expressions import cut_symbols
from .handles import OpenFiles
from .measure import check_max_len, compute_specs
from .memory import mapped_zeros
from .parallel import map_ordered
from .paths import PathLike, expand, file_identity, is_remote
from .plan import Group, Unit, file_key, file_units, layout, validation_mask
from .readahead import Pending, ReadAhead
from .reader import Part, UnitReader
from .rootio import one_line
from .scan import DEFAULT_EXCLUDE, Aliases, FileMeta, aliases_by_file, scan, select
from .spec import FeatureSpec

if TYPE_CHECKING:
    import tensorflow as tf
    from distributed import Client
    from numpy.typing import NDArray

    from .tf import Rows, StreamPyDataset

__all__ = ["DataStream", "NonFiniteWarning"]

_SPLITS = (None, "train", "validation")
_BLOCKS_PER_CHUNK = 8  # a unit's rows come in blocks of chunk_size / 8 entries, freed one by one
_PREFETCH_FLOOR = 64 * 2**20  # the least default prefetch_bytes: narrow rows keep every reader busy
_ON_ERROR = ("raise", "skip")
# what a unit's converted rows depend on (besides its file): the cache's key
_READ_SETTINGS = (
    "tree",
    "names",
    "normalize",
    "labels",
    "label_branch",
    "cut",
    "aliases",
    "seed",
    "validation_fraction",
)


def __dir__() -> list[str]:
    return __all__


class NonFiniteWarning(UserWarning):
    """NaN or inf values were found, replaced by 0 and masked."""


@dataclass
class _Finished:
    """An already computed result with a Future's ``result``/``cancel`` (no reader threads)."""

    value: list[Part]

    def result(self) -> list[Part]:
        return self.value

    def cancel(self) -> bool:
        return False


def _groups_of(
    sources: Mapping[int, PathLike] | PathLike, label: str | None, redirector: str | None
) -> list[tuple[int | None, list[str]]]:
    if isinstance(sources, Mapping):
        if label is not None:
            msg = "give either {label: files} sources or label='branch', not both"
            raise ValueError(msg)
        keys = sorted(sources)
        if keys != list(range(len(keys))):
            msg = f"labels must be the integers 0..K-1, got {keys}"
            raise ValueError(msg)
        return [(key, expand(sources[key], redirector)) for key in keys]
    if label is None:
        msg = "unlabelled sources: give {label: files} or label='<branch holding the target>'"
        raise ValueError(msg)
    return [(None, expand(sources, redirector))]


class DataStream:
    """Stream ROOT files as chunks of padded, normalised float32 features and labels.

    Parameters
    ----------
    sources : ``{label: files}`` with labels 0..K-1 (one label per file, as
        MLaaS4HEP), or files (path, URL, glob or list) with ``label="branch"``.
    tree : the TTree or RNTuple name.
    branches, exclude, max_len : the selection, as for `compute_specs`.
    specs : a `FeatureSpec` (or the path of one); computed when None.
    chunk_size : events per chunk; a read takes at most as many (whole clusters
        where they fit, else a part of one), so memory follows it.
    batch_size : events per batch for the Keras and tf.data adapters (a `Trainer`
        uses it unless given its own).
    shuffle : shuffle events within chunks and the order of reads, by ``seed``.
    seed : the seed of shuffling and of the train/validation split.
    cut : an uproot cut expression applied before anything else.
    label : the branch holding the target when ``sources`` is not a dict.
    normalize : ``"minmax"`` (to [0, 1]), ``"standard"`` or None.
    validation_fraction : the share of events (chosen by a hash of file and
        entry, fixed by ``seed``) in the ``"validation"`` split.
    aliases : computed columns ``{name: expression}``, or ``{label: {...}}`` per
        label to map samples with other schemas onto the same features (see
        `compute_specs`).
    max_workers : threads that read and convert ahead of the consumer (without Dask).
    client : a ``dask.distributed.Client``: its workers read and convert, the
        kernel only assembles chunks; at most ``prefetch`` reads are in flight.
    prefetch : reads in flight ahead of the consumer (default ``max_workers + 1``,
        or twice the Dask workers); bounds memory.
    prefetch_bytes : bytes of converted rows held for the chunks not yet
        yielded, read or being read (a chunk's own reads go ahead whatever
        it says); by default a chunk's bytes (``chunk_size`` x bytes per event)
        times the readers (threads or Dask workers, at least 2), or twice the
        largest unit's bytes (a cluster, up to 4 chunks: the next one is read
        while its chunks are made), or 64 MiB, whichever is most.
        ``report["read_ahead"]`` gives it and the most held in the latest pass.
    on_error : ``"raise"`` (default) stops on a file that stays unreachable after
        retries; ``"skip"`` leaves it out and lists it in ``report["skipped"]``.
    retries : attempts after the first for a failing remote read, with backoff.
    cache : keep the converted rows of the first pass, so that later passes
        (epochs) read no ROOT file: ``"auto"`` (default) in memory up to
        ``cache_limit`` bytes, then in memory-mapped files of a temporary
        folder; ``"memory"`` in memory only (past the limit, rows are read
        again each pass); ``"disk"`` in files only; a folder path: files in a
        temporary folder made inside it; False: no cache, every pass reads the
        files. The folder is removed by `close` and when the stream is
        garbage-collected. Each pass reshuffles as without the cache (same
        rows, same order); a file whose size or mtime (remote: size) changed is
        read again.
        ``report["cache"]`` says what it holds and where.
    cache_limit : bytes of rows the cache keeps in memory; by default an eighth
        of what it keeps plus the memory available (the container's limit
        counts), asked at each store: it stops growing as other memory use grows.
    cache_dir : keep copies of remote files here, so later passes read locally.
    progress : show a progress bar while computing the spec.
    redirector : prefix for ``/store/...`` logical file names (MLaaS4HEP style).
    """

    def __init__(
        self,
        sources: Mapping[int, PathLike] | PathLike,
        tree: str = "Events",
        branches: Sequence[str] | None = None,
        exclude: Sequence[str] = DEFAULT_EXCLUDE,
        specs: FeatureSpec | str | os.PathLike[str] | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        batch_size: int = DEFAULT_BATCH_SIZE,
        shuffle: bool = True,
        seed: int = 0,
        cut: str | None = None,
        label: str | None = None,
        normalize: str | None = "minmax",
        validation_fraction: float = 0.2,
        *,
        max_len: int | Mapping[str, int] | None = None,
        aliases: Aliases | None = None,
        max_workers: int = 2,
        client: Client | None = None,
        prefetch: int | None = None,
        prefetch_bytes: int | None = None,
        on_error: str = "raise",
        retries: int = 3,
        cache: str | os.PathLike[str] | bool = "auto",
        cache_limit: int | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        progress: bool = True,
        redirector: str | None = None,
    ) -> None:
        if chunk_size < 1 or batch_size < 1:
            msg = "chunk_size and batch_size must be positive"
            raise ValueError(msg)
        if not 0.0 <= validation_fraction < 1.0:
            msg = f"validation_fraction must be in [0, 1), not {validation_fraction}"
            raise ValueError(msg)
        if on_error not in _ON_ERROR:
            msg = f"on_error must be one of {_ON_ERROR}, not {on_error!r}"
            raise ValueError(msg)
        check_max_len(max_len)
        mode, cache_parent = cache_mode(cache)
        self._cache = None if mode is None else UnitCache(mode, cache_limit, cache_parent)
        self.tree = tree
        self.chunk_size = int(chunk_size)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.cut = cut
        self.label = label
        self.normalize = normalize
        self.validation_fraction = float(validation_fraction)
        self.max_workers = max(0, int(max_workers))
        self.client = client
        self.on_error = on_error
        self.report: dict[str, dict[str, Any]] = {
            "nonfinite": {},
            "skipped": {},
            "cache": {"mode": None} if self._cache is None else self._cache.describe(),
        }
        #: entries read per file in the current pass: path -> (done, total)
        self.file_progress: dict[str, tuple[int, int]] = {}

        groups = _groups_of(sources, label, redirector)
        all_files = [path for _, paths in groups for path in paths]
        # without label= every group has its int label
        by_label = cast("dict[int, list[str]]", dict(groups)) if label is None else all_files
        aliases_of = aliases_by_file(by_label, aliases)
        skipped = self.report["skipped"] if on_error == "skip" else None
        # what the scan opens stays open for the spec and the reader threads; a thread that
        # finds a file busy opens another handle of it rather than wait (once per stream)
        threads = max(1, self.max_workers)
        self._open_files = OpenFiles(max_open=8 * threads, per_file=threads)
        metas = {
            m.path: m
            for m in scan(all_files, tree, aliases_of, skipped=skipped, open_files=self._open_files)
        }
        groups = [(key, [p for p in paths if p in metas]) for key, paths in groups]
        self.files = [path for _, paths in groups for path in paths]
        if not self.files:
            msg = f"none of the {len(all_files)} input files could be read: {self.report}"
            raise EmptyDataError(msg)
        self.groups = [
            Group(key, tuple(paths), tuple(metas[p].entries for p in paths))
            for key, paths in groups
        ]
        self._entries = {path: meta.entries for path, meta in metas.items()}
        self.n_events = sum(group.total for group in self.groups)
        if self.n_events == 0:
            msg = f"tree {tree!r} is empty in all {len(self.files)} input file(s)"
            raise EmptyDataError(msg)
        if label is not None:
            self._check_label(list(metas.values()))
            exclude = (*exclude, label)
        by_label = cast("dict[int, list[str]]", dict(groups)) if label is None else self.files
        self.spec = self._spec(
            specs, list(metas.values()), by_label, branches, exclude, max_len, aliases, progress
        )
        first = metas[self.files[0]]
        cut_names = cut_symbols(cut, list(first.columns), f"{first.path}:{tree}") if cut else []
        names = [b.name for b in self.spec.branches] + cut_names + ([label] if label else [])
        self._cut_names = cut_names
        self._reader = UnitReader(
            tree=tree,
            names=list(dict.fromkeys(names)),
            spec=self.spec,
            normalize=normalize,
            labels=[group.label for group in self.groups],
            label_branch=label,
            cut=cut,
            cut_names=cut_names,
            aliases=aliases_of,
            seed=self.seed,
            validation_fraction=self.validation_fraction,
            retries=retries,
            cache_dir=None if cache_dir is None else str(cache_dir),
            block=-(-self.chunk_size // _BLOCKS_PER_CHUNK),
            open_files=self._open_files,
        )
        self.classes = self._classes()
        self.n_chunks = max(1, math.ceil(self.n_events / self.chunk_size))
        self._units = [
            [
                unit
                for path in group.files
                for unit in file_units(
                    g, path, metas[path].entries, metas[path].clusters, self.chunk_size
                )
            ]
            for g, group in enumerate(self.groups)
        ]
        readers = len(client.scheduler_info()["workers"]) if client else self.max_workers
        if prefetch is None:
            prefetch = 2 * readers if client else max_workers + 1
        self.prefetch = max(1, int(prefetch))
        if prefetch_bytes is None:
            chunk_bytes = self.chunk_size * self._row_bytes
            # room for the next unit while the chunks of the largest one are made, so
            # that reading goes on beside them (units hold up to 4 chunks' rows)
            largest = max((u.size for units in self._units for u in units), default=0)
            unit_bytes = 2 * largest * self._row_bytes
            prefetch_bytes = max(chunk_bytes * max(2, readers), unit_bytes, _PREFETCH_FLOOR)
        self.prefetch_bytes = int(prefetch_bytes)
        self.report["read_ahead"] = {"limit_bytes": self.prefetch_bytes, "peak_bytes": 0}
        #: shuffled passes started per split ("train", None): pass n is shuffled by (seed, n)
        self.passes: collections.Counter[str | None] = collections.Counter()
        self._pool: ThreadPoolExecutor | None = None
        self._warned = False
        self._counts: dict[str | None, int] = {}

    # --- setup -------------------------------------------------------------------------

    def _spec(
        self,
        specs: FeatureSpec | str | os.PathLike[str] | None,
        metas: list[FileMeta],
        by_label: dict[int, list[str]] | list[str],
        branches: Sequence[str] | None,
        exclude: Sequence[str],
        max_len: int | Mapping[str, int] | None,
        aliases: Aliases | None,
        progress: bool,
    ) -> FeatureSpec:
        if specs is None:
            return compute_specs(
                by_label,
                self.tree,
                branches,
                exclude,
                max_len,
                self.cut,
                aliases=aliases,
                chunk_size=self.chunk_size,
                progress=progress,
                client=self.client,
                open_files=self._open_files,
            )
        if not isinstance(specs, FeatureSpec):
            specs = (
                FeatureSpec.from_dict(specs)
                if isinstance(specs, Mapping)
                else FeatureSpec.load(specs)
            )
        names = [branch.name for branch in specs.branches]
        selected, _ = select(metas, self.tree, names, ())
        for column, branch in zip(selected, specs.branches, strict=True):
            if (column.jagged, column.fixed) != (branch.jagged, branch.fixed):
                msg = (
                    f"branch {column.name!r} is {branch.shape} in the spec but not in "
                    f"{metas[0].path} ({column.typename})"
                )
                raise SchemaError(msg)
        return specs

    def _check_label(self, metas: list[FileMeta]) -> None:
        for meta in metas:
            column = meta.columns.get(cast(str, self.label))  # called with label= only
            if column is None:
                msg = f"label branch {self.label!r} missing in {meta.path} (tree {self.tree!r})"
                raise SchemaError(msg)
            if column.jagged or not column.supported:
                msg = f"label branch {self.label!r} in {meta.path} must be one number per event"
                raise SchemaError(msg)

    def _whole_file(self, path: str, names: list[str]) -> tuple[dict[str, Any], NDArray[np.int64]]:
        """Columns ``names`` of a whole file and the entry numbers passing the cut."""
        return self._reader.passing(path, names, 0, self._entries[path], self._cut_names)

    def _label_values(self, path: str) -> NDArray[Any]:
        label = cast(str, self.label)  # called with label= only
        arrays, _ = self._whole_file(path, [label])
        values = np.asarray(arrays[label])
        if values.size and (np.any(values < 0) or np.any(values != np.round(values))):
            msg = f"label branch {self.label!r} in {path} holds values that are not 0..K-1"
            raise SchemaError(msg)
        return np.unique(values)

    def _classes(self) -> list[int]:
        if self.label is None:
            return cast("list[int]", [group.label for group in self.groups])  # all labelled
        seen = np.unique(np.concatenate(list(map_ordered(self._label_values, self.files))))
        return list(range(int(seen.max()) + 1)) if seen.size else [0]

    # --- public properties ---------------------------------------------------------------

    @property
    def features(self) -> list[str]:
        return self.spec.features

    @property
    def n_features(self) -> int:
        return self.spec.n_features

    @property
    def _row_bytes(self) -> int:
        """Bytes of one converted event: X (float32) and mask per feature, y, split, entry."""
        return 5 * self.n_features + 4 + 1 + 8

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def dashboard_link(self) -> str | None:
        """The Dask dashboard of the cluster that reads, or None when reading locally."""
        return getattr(self.client, "dashboard_link", None)

    def __repr__(self) -> str:
        sizes = ", ".join(
            f"{'label ' + str(g.label) if g.label is not None else self.label}: "
            f"{len(g.files)} files/{g.total} events"
            for g in self.groups
        )
        where = f", on {self.client}" if self.client is not None else ""
        return (
            f"DataStream({sizes}; {self.n_features} features, {self.n_chunks} chunks of "
            f"~{self.chunk_size}, tree {self.tree!r}{where})"
        )

    # --- reading -----------------------------------------------------------------------

    def _unit_orders(self, shuffle_seed: tuple[int, int] | None) -> list[list[Unit]]:
        orders = []
        for g, units in enumerate(self._units):
            if shuffle_seed is not None:
                rng = np.random.default_rng([*shuffle_seed, g])
                units = [units[i] for i in rng.permutation(len(units))]
            orders.append(units)
        return orders

    def _assemble(
        self,
        segments: list[tuple[Part, int, int]],
        index: int,
        shuffle_seed: tuple[int, int] | None,
        partition: bool,
    ) -> Part:
        """Join rows ``[first, stop)`` of each block, scattering them to their places.

        ``segments`` is emptied as the rows are copied: a block is freed as
        soon as its last rows are in (unless held elsewhere, by the cache or
        for a later chunk). With ``partition``, training rows come first
        (shuffled with a seed) and validation rows last (in read order), so
        either split is a view.
        """
        n = sum(stop - first for _, first, stop in segments)
        rng = np.random.default_rng([*shuffle_seed, index]) if shuffle_seed is not None else None
        if partition:
            validation = np.concatenate(
                [part.validation[first:stop] for part, first, stop in segments]
                or [np.empty(0, bool)]
            )
            n_train = n - int(validation.sum())
            place = np.empty(n, dtype=np.int64)
            place[~validation] = rng.permutation(n_train) if rng else np.arange(n_train)
            place[validation] = np.arange(n_train, n)
        else:
            place = rng.permutation(n) if rng else np.arange(n)
        chunk = Part(
            mapped_zeros((n, self.n_features), np.float32),
            mapped_zeros((n, self.n_features), bool),
            np.empty(n, np.float32),
            np.empty(n, bool),
            np.empty(n, np.int64),
        )
        done = 0
        segments.reverse()
        while segments:
            part, first, stop = segments.pop()
            where = place[done : done + stop - first]
            for name in Part.FIELDS:
                getattr(chunk, name)[where] = getattr(part, name)[first:stop]
            for key, per_row in part.nonfinite.items():
                chunk.nonfinite.setdefault(key, np.zeros(n, np.int64))[where] = per_row[first:stop]
            done += stop - first
            del part  # the block's last reference, when taken whole
        return chunk

    def _submit(self, unit: Unit) -> Pending:
        if self._cache is not None:
            cached = self._cache.get(unit)
            if cached is not None:
                return _Finished(cached)
        if self.client is not None:
            return cast("Pending", self.client.submit(self._reader, unit, pure=False))
        if self.max_workers == 0:
            return _Finished(self._reader(unit))
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="mlaas4hep-read")
        return self._pool.submit(self._reader, unit)

    def _result(self, unit: Unit, future: Pending) -> list[Part]:
        """The unit's blocks; a file that stays unreachable raises or, with skip, gives none."""
        try:
            blocks = future.result()
        except SourceError as err:
            if self.on_error != "skip":
                raise
            self.report["skipped"][unit.file] = str(err)
            return [Part.empty(self.n_features)]
        except Exception as err:
            if self.client is None or isinstance(err, (SchemaError, EmptyDataError)):
                raise
            msg = (
                f"Dask could not read entries {unit.start}-{unit.stop} of {unit.file}: "
                f"{one_line(err)}"
            )
            raise RuntimeError(msg) from err
        if self._cache is not None:
            self._cache.put(unit, blocks)  # on the kernel's side, with Dask too
        return blocks

    def _cache_key(self) -> str:
        """What the cached rows depend on besides the files: the reader's settings, the units."""
        reader = self._reader
        settings: dict[str, Any] = {name: getattr(reader, name) for name in _READ_SETTINGS}
        settings["spec"] = reader.spec.to_dict()
        settings["units"] = [[dataclasses.astuple(unit) for unit in units] for units in self._units]
        text = json.dumps(settings, sort_keys=True, default=repr)
        return hashlib.sha256(text.encode()).hexdigest()

    def _file_stamps(self) -> dict[str, Any]:
        """Each file's identity now (size, mtime); None where it cannot be checked."""

        def stamp(path: str) -> Any:
            try:
                return file_identity(path)
            except (OSError, SourceError):
                return None

        if any(is_remote(path) for path in self.files):
            return dict(zip(self.files, map_ordered(stamp, self.files), strict=True))
        return {path: stamp(path) for path in self.files}

    def _produce(self, shuffle_seed: tuple[int, int] | None, partition: bool) -> Iterator[Part]:
        """Chunks in order, reading units ahead (threads or Dask), bounded in count and bytes."""
        if self._cache is not None:
            for path in self._cache.begin(self._cache_key(), self._file_stamps()):
                self._open_files.drop(path)  # changed: its open handles read the old file
        orders = self._unit_orders(shuffle_seed)
        chunks = layout(orders, self.n_chunks)
        needed = list(dict.fromkeys((g, s.unit) for chunk in chunks for g, s in chunk))
        last_use = {(g, s.unit): k for k, chunk in enumerate(chunks) for g, s in chunk}
        reads = ReadAhead(
            needed,
            lambda key: self._submit(orders[key[0]][key[1]]),
            lambda key, future: self._result(orders[key[0]][key[1]], future),
            lambda key: orders[key[0]][key[1]].size * self._row_bytes,
            self.prefetch,
            self.prefetch_bytes,
        )
        self.file_progress = {
            p: (0, e) for g in self.groups for p, e in zip(g.files, g.entries, strict=True)
        }
        try:
            for k, chunk in enumerate(chunks):
                keys = [(g, s.unit) for g, s in chunk]
                reads.ahead(keys)
                segments = [
                    segment
                    for key, (_, s) in zip(keys, chunk, strict=True)
                    for segment in reads.take(key, s.low - s.offset, s.high - s.offset)
                ]
                assembled = self._assemble(segments, k, shuffle_seed, partition)
                for key in keys:
                    if last_use[key] == k:
                        reads.forget(key)
                        unit = orders[key[0]][key[1]]
                        done, total = self.file_progress[unit.file]
                        self.file_progress[unit.file] = (done + unit.size, total)
                self.report["read_ahead"]["peak_bytes"] = reads.peak
                yield assembled
                # a generator's locals live on while it makes the next chunk: let go of
                # this one (here and in the generators over it), the consumer may have
                del assembled
        finally:
            reads.cancel()
            if self._cache is not None:
                self.report["cache"] = self._cache.describe()

    def _note_nonfinite(self, counts: dict[str, int], chunk: Part, rows: slice) -> None:
        """Add the NaN/inf in ``rows`` of ``chunk`` to ``counts``; warn the first time."""
        found = {key: int(per_row[rows].sum()) for key, per_row in chunk.nonfinite.items()}
        found = {key: count for key, count in found.items() if count}
        for key, count in found.items():
            counts[key] = counts.get(key, 0) + count
        if found and not self._warned:
            self._warned = True
            first, count = next(iter(found.items()))
            warn_user(
                f"{count} NaN/inf value(s) in branch {first} replaced by 0 and masked; "
                "stream.report['nonfinite'] counts them all in the latest pass (this warning "
                "is shown once)",
                NonFiniteWarning,
            )

    def _pass(
        self, split: str | None, counted: str | None, pass_number: int | None = None
    ) -> Iterator[tuple[Part, int]]:
        """One pass over ``split``: each chunk with its number of training rows.

        NaN/inf are counted in the rows of ``counted`` (None: all rows), into
        ``report["nonfinite"]``, which holds the counts of the latest pass.
        The pass is shuffled as pass ``pass_number`` of ``split``, by default
        the next one of `passes` (which then counts it).
        """
        shuffle_seed: tuple[int, int] | None = None
        if self.shuffle and split != "validation":
            if pass_number is None:
                pass_number = self.passes[split]
                self.passes[split] += 1
            shuffle_seed = (self.seed, pass_number)
        counts: dict[str, int] = {}
        self.report["nonfinite"] = counts
        for chunk in self._produce(shuffle_seed, partition=split is not None):
            n_train = len(chunk.y) - int(chunk.validation.sum())
            self._note_nonfinite(counts, chunk, _rows(counted, n_train))
            yield chunk, n_train
            del chunk

    def chunks(self, split: str | None = None) -> Generator[Rows, None, None]:
        """Yield ``(X, mask, y)`` chunks over the events of ``split``.

        ``split`` is ``"train"``, ``"validation"`` or None (every event). Each
        event appears exactly once per pass. With ``shuffle``, every pass
        reads in a new order (fixed by ``seed`` and the pass number) and
        shuffles events within each chunk; validation is never shuffled.
        """
        if split not in _SPLITS:
            msg = f"split must be one of {_SPLITS}, not {split!r}"
            raise ValueError(msg)
        for chunk, n_train in self._pass(split, split):
            rows = _rows(split, n_train)
            x, mask, y = chunk.x[rows], chunk.mask[rows], chunk.y[rows]
            del chunk
            if split is None or len(y):
                yield x, mask, y
            del x, mask, y

    def split_chunks(
        self, pass_number: int | None = None
    ) -> Generator[tuple[Rows, Rows], None, None]:
        """Yield ``((X, mask, y) of train, (X, mask, y) of validation)`` per chunk.

        One read serves both splits: training can validate on rows it already
        read instead of reading the files twice per epoch. Shuffled like "train":
        as training pass ``pass_number`` (pass n is shuffled by ``(seed, n)``),
        by default the next one, ``passes["train"]``, which then counts it. A
        given number leaves `passes` alone: a `Trainer` numbers its epochs so,
        to start reading the next epoch while the current one ends.
        """
        for chunk, n_train in self._pass("train", None, pass_number):
            yield (
                (chunk.x[:n_train], chunk.mask[:n_train], chunk.y[:n_train]),
                (chunk.x[n_train:], chunk.mask[n_train:], chunk.y[n_train:]),
            )
            del chunk

    def batches(
        self, split: str | None = None, batch_size: int | None = None
    ) -> Generator[Rows, None, None]:
        """Yield ``(X, mask, y)`` batches of ``batch_size`` events (the last may be short)."""
        size = batch_size or self.batch_size
        held: list[Rows] = []
        held_n = 0
        for x, mask, y in self.chunks(split):
            if held:
                need = size - held_n
                held.append((x[:need], mask[:need], y[:need]))
                held_n += min(need, len(y))
                x, mask, y = x[need:], mask[need:], y[need:]
                if held_n < size:
                    continue
                yield cast(
                    "Rows", tuple(np.concatenate(parts) for parts in zip(*held, strict=True))
                )
                held, held_n = [], 0
            full = len(y) - len(y) % size
            for start in range(0, full, size):
                yield x[start : start + size], mask[start : start + size], y[start : start + size]
            if full < len(y):
                held, held_n = [(x[full:], mask[full:], y[full:])], len(y) - full
        if held:
            yield cast("Rows", tuple(np.concatenate(parts) for parts in zip(*held, strict=True)))

    def head(self, n: int, split: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The first ``n`` events of ``split`` as ``(X, mask, y)`` (fewer if it has fewer).

        Reads only the chunks it needs, in the order `chunks` yields them.
        """
        empty = Part.empty(self.n_features)
        parts, have = [(empty.x, empty.mask, empty.y)], 0
        if n > 0:
            with contextlib.closing(self.chunks(split)) as chunks:
                for x, mask, y in chunks:
                    parts.append((x[: n - have], mask[: n - have], y[: n - have]))
                    have += len(parts[-1][2])
                    if have >= n:
                        break
        x, mask, y = (np.concatenate(column) for column in zip(*parts, strict=True))
        return x, mask, y

    def count(self, split: str | None = None) -> int:
        """Events in ``split`` (after the cut); reads only the cut's branches when there is one."""
        if split not in _SPLITS:
            msg = f"split must be one of {_SPLITS}, not {split!r}"
            raise ValueError(msg)
        if not self._counts:
            masks = list(map_ordered(self._file_split, self.files))
            validation = sum(int(mask.sum()) for mask in masks)
            total = sum(len(mask) for mask in masks)
            self._counts = {"train": total - validation, "validation": validation, None: total}
        return self._counts[split]

    def _file_split(self, path: str) -> NDArray[np.bool_]:
        _, entries = self._whole_file(path, [])
        return validation_mask(file_key(path), entries, self.seed, self.validation_fraction)

    # --- adapters ----------------------------------------------------------------------

    def to_tf_dataset(
        self, split: str | None = "train", with_mask: bool = False
    ) -> tf.data.Dataset:
        """A ``tf.data.Dataset`` of ``(X, y)`` batches (``((X, mask), y)`` with ``with_mask``)."""
        from .tf import to_tf_dataset

        return to_tf_dataset(self, split, with_mask)

    def to_keras(self, split: str | None = "train", with_mask: bool = False) -> StreamPyDataset:
        """A ``keras.utils.PyDataset`` over ``split``; fit it with ``shuffle=False``."""
        from .tf import StreamPyDataset

        return StreamPyDataset(self, split, with_mask)

    def close(self) -> None:
        """Stop the reader threads, close the files and empty the cache (its folder is removed).

        The stream can still be iterated afterwards: it reads the files again.
        """
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._open_files.close()
        if self._cache is not None:
            self._cache.clear()
            self.report["cache"] = self._cache.describe()


def _rows(split: str | None, n_train: int) -> slice:
    """The rows of ``split`` in a partitioned chunk: training rows come first."""
    if split is None:
        return slice(None)
    return slice(n_train, None) if split == "validation" else slice(None, n_train)
