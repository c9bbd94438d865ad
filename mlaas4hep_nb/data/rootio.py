"""Open ROOT files and read columns from TTrees and RNTuples alike.

TTree and RNTuple differ in how they list and read their columns; each
difference is one function registered per uproot type (``HasBranches`` for
TTree, ``HasFields`` for RNTuple), as uproot-browser does.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import threading
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias
from urllib.parse import urlsplit

import awkward as ak
import fsspec
import uproot
from uproot.behaviors.RNTuple import HasFields
from uproot.behaviors.TBranch import HasBranches

from .._compat.uproot_zlib import decompress_zlib_with_isal
from ..errors import SchemaError, SourceError
from .paths import is_remote

__all__ = [
    "Column",
    "classify",
    "cluster_starts",
    "columns",
    "forget_remote",
    "kind_of",
    "one_line",
    "open_file",
    "open_tree",
    "read_columns",
    "shape_name",
    "tree_names",
    "warm_vector_reads",
]

#: An uproot TTree (``HasBranches``) or RNTuple (``HasFields``): uproot ships no types.
Tree: TypeAlias = Any

#: Seconds before a remote open or read gives up.
REMOTE_TIMEOUT = int(os.environ.get("MLAAS4HEP_NB_TIMEOUT", "30"))

decompress_zlib_with_isal()  # zlib baskets decompress about twice as fast

_OBJECTS = "objects (records, TLorentzVector, ...) cannot be numeric features"
_TREE_CLASSES = ("TTree", "ROOT::RNTuple", "ROOT::Experimental::RNTuple")
_LIST_FORMS = (ak.forms.ListOffsetForm, ak.forms.ListForm, ak.forms.RegularForm)
_OPTION_FORMS = (
    ak.forms.IndexedOptionForm,
    ak.forms.IndexedForm,
    ak.forms.UnmaskedForm,
    ak.forms.ByteMaskedForm,
    ak.forms.BitMaskedForm,
)


def __dir__() -> list[str]:
    return __all__


def shape_name(jagged: bool, fixed: int | None) -> str:
    """How a column becomes features: ``"flat"``, ``"jagged"`` or ``"fixed[n]"``."""
    if fixed is not None:
        return f"fixed[{fixed}]"
    return "jagged" if jagged else "flat"


@dataclass(frozen=True)
class Column:
    """One readable column: its name, numeric dtype, list depth and why it is unusable.

    ``fixed`` is the length of a fixed-size array (``float[3]``, ``std::array``):
    such a column has depth 1 but is not jagged, every entry has ``fixed`` values.
    """

    name: str
    typename: str
    title: str
    dtype: str | None
    depth: int
    problem: str | None
    fixed: int | None = None

    @property
    def jagged(self) -> bool:
        return self.depth >= 1 and self.fixed is None

    @property
    def shape(self) -> str:
        return shape_name(self.jagged, self.fixed)

    @property
    def supported(self) -> bool:
        return self.problem is None


def _configure_xrootd() -> None:
    # The XRootD client retries a dead host for minutes by default; fail in REMOTE_TIMEOUT.
    try:
        from XRootD.client import EnvPutInt
    except ImportError:
        return
    window = int(REMOTE_TIMEOUT)
    EnvPutInt("ConnectionWindow", int(os.environ.get("XRD_CONNECTIONWINDOW", window)))
    EnvPutInt("ConnectionRetry", int(os.environ.get("XRD_CONNECTIONRETRY", 1)))
    EnvPutInt("RequestTimeout", int(os.environ.get("XRD_REQUESTTIMEOUT", window)))
    # after a broken connection it refuses every request to that server for 30 minutes by
    # default; a retry should reconnect (to a restarted server, say)
    EnvPutInt("StreamErrorWindow", int(os.environ.get("XRD_STREAMERRORWINDOW", 0)))


_configure_xrootd = functools.cache(_configure_xrootd)


def open_file(
    path: str, cache_dir: str | None = None, sizes: MutableMapping[str, int] | None = None
) -> uproot.ReadOnlyDirectory:
    """Open a local or remote ROOT file; errors name the file and say what is wrong.

    With ``cache_dir``, a remote file is copied there whole on first use and
    read from the copy afterwards. ``sizes`` holds the sizes of remote files
    known already (path -> bytes): the truncation check asks the server for
    the size of a file found there no more, and adds the size it asks for.
    """
    options: dict[str, Any] = {"array_cache": None, "object_cache": None}
    local = path
    if is_remote(path) and path.startswith(("root://", "xroot://")):
        _configure_xrootd()
    if is_remote(path) and cache_dir is not None:
        local = _cached_copy(path, cache_dir)
    if is_remote(local):
        options["timeout"] = REMOTE_TIMEOUT
    else:
        _check_local(local)
        # read with pread, not uproot's default memory map: the pages of a mapped file that
        # a pass has read stay in the process's RSS while the file is open, so that RSS
        # could grow with the files and their sizes, not with chunk_size
        options["handler"] = uproot.source.file.MultithreadedFileSource
        sizes = None  # a local file's (or copy's) size costs nothing
    try:
        file = uproot.ReadOnlyFile(local, **options)
        size = sizes.get(path) if sizes is not None else None
        if size is None:
            size = file.source.num_bytes  # a stat, for a remote file
            if sizes is not None and size is not None:
                sizes[path] = int(size)
        expected = file.fEND
    except Exception as err:
        msg = f"cannot open {path} as a ROOT file: {one_line(err)}"
        raise SourceError(msg) from err
    # before the directory is read: ROOT writes it at the end of the file
    if size is not None and size < expected:
        msg = f"{path} is truncated: its header says {expected} bytes, it holds {size}"
        raise SourceError(msg)
    try:
        return file.root_directory
    except Exception as err:
        msg = f"cannot read the directory of {path} (damaged?): {one_line(err)}"
        raise SourceError(msg) from err


_WARMED: set[str] = set()
_WARMING = threading.Lock()


def warm_vector_reads(paths: Iterable[str]) -> None:
    """Make one vector read per XRootD host, once per process, before threads read at once.

    fsspec-xrootd asks a server for its vector-read limits on the first vector
    read and keeps the answer for the process; reader threads that start
    together each ask (1 to 6 queries per pass were seen). A host that cannot
    be reached is left for the reads that follow to report.
    """
    first: dict[str, str] = {}
    for path in paths:
        if path.startswith(("root://", "xroot://")):
            first.setdefault(urlsplit(path).netloc, path)
    for host, path in first.items():
        with _WARMING:
            if host in _WARMED:
                continue
            _configure_xrootd()
            try:
                fs, stripped = fsspec.core.url_to_fs(path, timeout=REMOTE_TIMEOUT)
                fs.cat_ranges([stripped], [0], [1])
            except Exception:  # the reads that follow say what is wrong
                continue
            _WARMED.add(host)


def forget_remote(path: str) -> None:
    """Drop what fsspec keeps of ``path`` between opens, so that the next open starts afresh.

    fsspec-xrootd keeps a file's XRootD handle open for 30 s after use and
    hands it to every open of the same URL, even once it is dead (its server
    restarted): a retry would get it again.
    """
    if not is_remote(path):
        return
    # closing a dead handle fails, after it has left the cache
    with contextlib.suppress(Exception):
        fs, stripped = fsspec.core.url_to_fs(path, timeout=REMOTE_TIMEOUT)
        fs.invalidate_cache(stripped)


def one_line(err: BaseException) -> str:
    """``Type: message`` on one line (uproot's messages span several)."""
    return f"{type(err).__name__}: {' '.join(str(err).split())}"


def _cached_copy(url: str, cache_dir: str) -> str:
    """The local copy of ``url`` in ``cache_dir``, downloaded whole on first use.

    The copy is written under a temporary name and renamed, so concurrent
    readers (threads or Dask workers) never see a partial file.
    """
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    local = Path(cache_dir) / f"{digest}-{os.path.basename(url)}"
    if local.exists():
        return str(local)
    local.parent.mkdir(parents=True, exist_ok=True)
    partial = local.with_name(f"{local.name}.{os.getpid()}.{threading.get_ident()}.part")
    try:
        fs, remote = fsspec.core.url_to_fs(url)
        fs.get_file(remote, str(partial))
        partial.replace(local)
    except Exception as err:
        partial.unlink(missing_ok=True)
        msg = f"cannot copy {url} into the cache {cache_dir}: {one_line(err)}"
        raise SourceError(msg) from err
    return str(local)


def _check_local(path: str) -> None:
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
    except FileNotFoundError:
        msg = f"ROOT file not found: {path}"
        raise SourceError(msg) from None
    except OSError as err:
        msg = f"cannot read {path}: {one_line(err)}"
        raise SourceError(msg) from err
    if magic != b"root":
        msg = f"{path} is not a ROOT file (it starts with {magic!r}, not b'root')"
        raise SourceError(msg)


def tree_names(directory: uproot.ReadOnlyDirectory) -> dict[str, str]:
    """Every TTree and RNTuple in the file, nested directories included: path -> class."""
    found = directory.classnames(recursive=True, cycle=False)
    return {name: cls for name, cls in found.items() if cls in _TREE_CLASSES}


def open_tree(
    path: str,
    tree: str,
    cache_dir: str | None = None,
    sizes: MutableMapping[str, int] | None = None,
) -> Tree:
    """Open ``tree`` (a TTree or RNTuple, ``dir/name`` for nested ones) in the file at ``path``.

    ``cache_dir`` and ``sizes`` as for `open_file`.
    """
    directory = open_file(path, cache_dir, sizes)
    try:
        found = tree_names(directory)
    except Exception as err:
        msg = f"cannot read the directory of {path} (truncated or damaged?): {one_line(err)}"
        raise SourceError(msg) from err
    if tree not in found:
        msg = f"no tree {tree!r} in {path}; it holds {sorted(found) or 'no trees'}"
        raise SchemaError(msg)
    try:
        return directory[tree]
    except Exception as err:
        msg = f"cannot read tree {tree!r} in {path} (truncated or damaged?): {one_line(err)}"
        raise SourceError(msg) from err


def kind_of(tree: Tree) -> str:
    """``"TTree"`` or ``"RNTuple"``."""
    return "RNTuple" if isinstance(tree, HasFields) else "TTree"


def classify(form: ak.forms.Form) -> tuple[str | None, int, str | None, int | None]:
    """Numeric dtype, list depth, the problem (None when usable) and fixed size of a form.

    The fixed size is the length of a one-level array whose every entry has
    the same length (a ``RegularForm``, or a numpy inner dimension); None otherwise.
    """
    depth = 0
    sizes: list[int | None] = []
    while True:
        if form.parameters.get("__array__") in ("string", "bytestring", "char", "byte"):
            return None, depth, "strings cannot be numeric features", None
        if isinstance(form, _LIST_FORMS):
            depth += 1
            sizes.append(form.size if isinstance(form, ak.forms.RegularForm) else None)
            form = form.content
        elif isinstance(form, _OPTION_FORMS):
            form = form.content
        else:
            break
    if isinstance(form, ak.forms.RecordForm):
        return None, depth, _OBJECTS, None
    if not isinstance(form, ak.forms.NumpyForm):
        return None, depth, f"{type(form).__name__} cannot be a numeric feature", None
    depth += len(form.inner_shape)
    sizes.extend(form.inner_shape)
    dtype = form.primitive
    if not (dtype == "bool" or dtype.startswith(("int", "uint", "float"))):
        return dtype, depth, f"{dtype} cannot be a numeric feature", None
    if depth > 1:
        return dtype, depth, "nested vectors cannot be padded to fixed-size features", None
    return dtype, depth, None, sizes[0] if sizes else None


@functools.singledispatch
def columns(tree: Tree) -> dict[str, Column]:
    """Every leaf column of a TTree or RNTuple, in the tree's order."""
    msg = f"{type(tree).__name__} is neither a TTree nor an RNTuple"
    raise TypeError(msg)


@columns.register
def _(tree: HasBranches) -> dict[str, Column]:
    found = {}
    for name, branch in tree.iteritems(recursive=True, full_paths=True):
        if branch.branches:
            continue  # a split object: its leaves are listed on their own
        try:
            shape = classify(branch.interpretation.awkward_form(branch.file))
        except Exception as err:
            shape = None, 0, f"uproot cannot interpret it ({one_line(err)})", None
        found[name] = Column(name, branch.typename, branch.title, *shape)
    return found


def _leaf_form(form: ak.forms.Form, path: Iterable[str]) -> ak.forms.Form:
    """The form of one leaf field, keeping the lists that enclose it."""
    for part in path:
        wrappers = []
        while not isinstance(form, ak.forms.RecordForm):
            wrappers.append(form)
            form = form.content
        form = form.content(part)
        for wrapper in reversed(wrappers):
            form = wrapper.copy(content=form)
    return form


@columns.register
def _(tree: HasFields) -> dict[str, Column]:
    found = {}
    for name in tree.keys(recursive=True, full_paths=True):
        field = tree[name]
        if field.keys():
            continue  # a record: its leaves are listed on their own
        try:
            form, path = field.to_akform()
            shape = classify(_leaf_form(form, path))
        except Exception as err:
            shape = None, 0, f"uproot cannot interpret it ({one_line(err)})", None
        found[name] = Column(name, field.typename, field.description or "", *shape)
    return _without_importer_twins(found)


_IMPORTER_COLLECTION = re.compile(r"_collection\d+\.(?P<leaf>[^.]+)")


def _without_importer_twins(found: dict[str, Column]) -> dict[str, Column]:
    """Drop ``_collectionN.Jet_pt`` where a top-level ``Jet_pt`` holds the same values.

    ROOT's RNTupleImporter writes each TTree collection twice: as a field
    ``_collectionN`` of records, and as projected top-level fields named like
    the TTree's branches (``Jet_pt``, and ``nJet`` for its size). Only the
    latter are kept, so a TTree and its imported RNTuple have the same columns.
    """

    def twin(column: Column) -> bool:
        match = _IMPORTER_COLLECTION.fullmatch(column.name)
        other = found.get(match["leaf"]) if match else None
        return other is not None and (other.dtype, other.depth) == (column.dtype, column.depth)

    return {name: column for name, column in found.items() if not twin(column)}


def read_columns(tree: Tree, names: list[str], start: int, stop: int) -> dict[str, ak.Array]:
    """Read entries ``[start, stop)`` of the named columns: name -> awkward array."""
    try:
        return _read(tree, names, start, stop)
    except Exception as err:
        where = f"{tree.file.file_path}:{tree.object_path.lstrip('/').split(';')[0]}"
        msg = (
            f"cannot read entries {start}-{stop} of {where} (truncated, damaged or "
            f"unreachable?): {one_line(err)}"
        )
        raise SourceError(msg) from err


@functools.singledispatch
def _read(tree: Tree, names: list[str], start: int, stop: int) -> dict[str, ak.Array]:
    msg = f"{type(tree).__name__} is neither a TTree nor an RNTuple"
    raise TypeError(msg)


@_read.register
def _(tree: HasBranches, names: list[str], start: int, stop: int) -> dict[str, ak.Array]:
    wanted = set(names)
    arrays = tree.arrays(
        filter_name=lambda name: name in wanted, entry_start=start, entry_stop=stop
    )
    return {name: arrays[name] for name in names}


@_read.register
def _(tree: HasFields, names: list[str], start: int, stop: int) -> dict[str, ak.Array]:
    wanted = {name.split(".", 1)[0] for name in names} | set(names)
    arrays = tree.arrays(
        filter_name=lambda name: name in wanted, entry_start=start, entry_stop=stop
    )
    return {name: arrays[tuple(name.split("."))] for name in names}


@functools.singledispatch
def cluster_starts(tree: Tree) -> list[int]:
    """Entry numbers where every column starts a new basket (TTree) or cluster (RNTuple)."""
    msg = f"{type(tree).__name__} is neither a TTree nor an RNTuple"
    raise TypeError(msg)


@cluster_starts.register
def _(tree: HasBranches) -> list[int]:
    return [int(offset) for offset in tree.common_entry_offsets()]


@cluster_starts.register
def _(tree: HasFields) -> list[int]:
    return [int(c.num_first_entry) for c in tree.cluster_summaries] + [int(tree.num_entries)]
