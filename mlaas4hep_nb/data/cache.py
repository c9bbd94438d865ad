"""UnitCache: the converted rows of each unit, kept across passes (in memory, then on disk).

A stream's first pass reads and converts the ROOT files; later passes take
each unit's blocks (`Part`: float32 X, mask, labels, validation flags, entry
numbers) from here and assemble it into chunks exactly as a fresh read would, so the
per-pass shuffling is unchanged. Units are kept in memory while the cached
bytes stay under a limit, then (``"auto"``) in memory-mapped files of a
temporary folder that is removed when the cache is cleared, closed or
garbage-collected. A unit is mapped only while a pass uses it, so memory
stays bounded whatever the size of the cache on disk.

Entries are valid for one key (the stream's settings) and, per file, for
one identity (size and mtime, see `paths.file_identity`): `begin` checks
both at the start of every pass and drops what no longer holds.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from .plan import Unit
from .reader import Part

__all__ = ["CACHE_MODES", "UnitCache", "available_memory", "cache_mode"]

CACHE_MODES = ("auto", "memory", "disk")
# the default memory limit: an eighth of the memory available (and of what the cache holds).
# Units past it go to files whose pages the kernel keeps in memory while it has room and
# can take back when it has not; the rows held in memory it cannot.
_MEMORY_SHARE = 8
_ALIGN = 64  # byte alignment of the arrays in a unit's file


def __dir__() -> list[str]:
    return __all__


def cache_mode(cache: Any) -> tuple[str | None, str | None]:
    """``DataStream(cache=...)`` to ``(mode, parent folder)``; mode None: no cache."""
    if cache is None or cache is False:
        return None, None
    if isinstance(cache, str) and cache in CACHE_MODES:
        return cache, None
    if isinstance(cache, (str, os.PathLike)):
        return "disk", os.fspath(cache)
    msg = f"cache must be one of {CACHE_MODES}, False or a folder path, not {cache!r}"
    raise ValueError(msg)


def _cgroup_room() -> int | None:
    """Bytes left under this container's cgroup memory limit, when there is one."""
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 2**60:  # "max" or a huge number: no limit
            return max(0, int(limit) - usage)
    return None


def available_memory() -> int:
    """Bytes of memory available to this process (the container's limit counts)."""
    available = int(psutil.virtual_memory().available)
    room = _cgroup_room()
    return available if room is None else min(available, room)


@dataclass
class _OnDisk:
    """Where a unit's arrays lie in its file: ``(field, dtype, shape, offset)`` per block."""

    path: str
    layout: list[list[tuple[str, str, tuple[int, ...], int]]]
    nbytes: int

    def load(self) -> list[Part]:
        raw = np.memmap(self.path, np.uint8, "r")
        blocks = []
        for block in self.layout:
            a: dict[str, np.ndarray] = {}
            for name, dtype, shape, offset in block:
                size = int(np.prod(shape)) * np.dtype(dtype).itemsize
                a[name] = raw[offset : offset + size].view(dtype).reshape(shape)
            nonfinite = {k[1:]: v for k, v in a.items() if k.startswith("!")}
            blocks.append(Part(a["x"], a["mask"], a["y"], a["validation"], a["rows"], nonfinite))
        return blocks


def _arrays(part: Part) -> list[tuple[str, np.ndarray]]:
    named = [(name, getattr(part, name)) for name in Part.FIELDS]
    return named + [("!" + key, value) for key, value in part.nonfinite.items()]


def _nbytes(blocks: list[Part]) -> int:
    return sum(part.nbytes for part in blocks)


def _write(path: str, blocks: list[Part]) -> _OnDisk:
    layout: list[list[tuple[str, str, tuple[int, ...], int]]] = []
    offset = 0
    with open(path, "wb") as file:
        for part in blocks:
            layout.append([])
            for name, array in _arrays(part):
                array = np.ascontiguousarray(array)
                offset = -(-offset // _ALIGN) * _ALIGN
                file.seek(offset)
                file.write(array.reshape(-1).view(np.uint8).data)
                layout[-1].append((name, array.dtype.str, tuple(array.shape), offset))
                offset += array.nbytes
    return _OnDisk(path, layout, offset)


class UnitCache:
    """Converted units of one stream, in memory up to ``limit`` bytes, then on disk.

    Parameters
    ----------
    mode : ``"auto"`` (memory, then files), ``"memory"`` (memory only: units
        past the limit are read again each pass) or ``"disk"`` (files only).
    limit : bytes of units kept in memory. When None, an eighth of what the
        cache holds in memory plus `available_memory`, asked at each store: the
        cache stops growing in memory when other memory use grows.
    parent : the folder in which the cache makes its temporary folder (the
        system's temporary folder when None).
    reserve : free bytes the cache leaves on the disk; past it, units are not kept.
    """

    def __init__(
        self,
        mode: str,
        limit: int | None = None,
        parent: str | None = None,
        reserve: int | None = None,
    ) -> None:
        if mode not in CACHE_MODES:
            msg = f"mode must be one of {CACHE_MODES}, not {mode!r}"
            raise ValueError(msg)
        if limit is not None and limit < 0:
            msg = f"cache_limit must be a number of bytes >= 0, not {limit!r}"
            raise ValueError(msg)
        self.mode = mode
        self.limit = None if limit is None else int(limit)
        self.bound = self.limit  # the memory limit at the latest store
        self.parent = parent
        self.reserve = reserve
        self.folder: str | None = None
        self.memory_bytes = 0
        self.disk_bytes = 0
        self.hits = 0  # units of the latest pass taken from the cache
        self.reads = 0  # ... and read from the files
        self.left_out = 0  # units of the latest pass not kept (limit reached, disk full)
        self.reason: str | None = None  # why the latest pass read from the files
        self.full: str | None = None  # why units were left out, when some were
        self._units: dict[Unit, list[Part] | _OnDisk] = {}
        self._asked: set[Unit] = set()  # the units the latest pass used
        self._stamps: dict[str, Any] = {}  # file -> identity its units were read under
        self._key: Any = None
        self._next = 0
        self._remove: weakref.finalize[Any, Any] | None = None
        self._lock = threading.Lock()

    # --- a pass --------------------------------------------------------------------------

    def begin(self, key: Any, stamps: Mapping[str, Any]) -> list[str]:
        """Start a pass: drop everything if ``key`` changed, and the units of changed files.

        ``stamps`` maps each file to its identity now (None: it could not be
        checked, so nothing of it is kept or used). Returns the changed files.
        """
        with self._lock:
            self.hits = self.reads = self.left_out = 0
            self._asked = set()
            self.reason = None if self._units else "nothing cached yet: the files are read"
            if key != self._key:
                if self._units:
                    self.reason = "the stream's settings changed: the files are read again"
                self._drop(list(self._units))
                self._stamps = {}
                self._key = key
            changed = [path for path, stamp in self._stamps.items() if stamps.get(path) != stamp]
            dropped = [unit for unit in self._units if unit.file in changed]
            if dropped:
                self.reason = (
                    f"{len(changed)} file(s) changed or unreachable ({changed[0]}, ...): read again"
                )
                self._drop(dropped)
            self._stamps = dict(stamps)
            return changed

    def get(self, unit: Unit) -> list[Part] | None:
        """The unit's blocks (memory-mapped when on disk), or None when not kept."""
        with self._lock:
            self._asked.add(unit)
            entry = self._units.get(unit)
            if entry is None:
                self.reads += 1
                return None
            self.hits += 1
        return entry.load() if isinstance(entry, _OnDisk) else entry

    def put(self, unit: Unit, blocks: list[Part]) -> None:
        """Keep a unit's ``blocks`` (read in this pass) for the next passes, if there is room."""
        with self._lock:
            if unit in self._units or self._stamps.get(unit.file) is None:
                return
            size = _nbytes(blocks)
            if self.mode != "disk" and (size == 0 or self._fits_in_memory(size)):
                self._units[unit] = blocks
                self.memory_bytes += size
                return
            if self.mode == "memory":
                self._refuse("cache_limit reached: units past it are read again each pass")
                return
            if not self._fits_on_disk(size):
                self._refuse("the disk is nearly full: units past it are read again each pass")
                return
            path = str(Path(self._folder()) / f"unit-{self._next}.bin")
            self._next += 1
        try:
            stored = _write(path, blocks)  # outside the lock: a pass need not wait for it
        except OSError as err:  # the disk filled up, or the folder was cleared meanwhile
            with contextlib.suppress(OSError):
                Path(path).unlink(missing_ok=True)
            with self._lock:
                self._refuse(f"cannot write the cache: {err}")
            return
        with self._lock:
            if self.folder is None or unit in self._units:  # cleared meanwhile
                with contextlib.suppress(OSError):
                    Path(path).unlink(missing_ok=True)
                return
            self._units[unit] = stored
            self.disk_bytes += stored.nbytes

    def _refuse(self, why: str) -> None:
        self.left_out += 1
        self.full = why

    def _fits_in_memory(self, size: int) -> bool:
        if self.limit is None:
            self.bound = (self.memory_bytes + available_memory()) // _MEMORY_SHARE
        return self.memory_bytes + size <= (self.bound or 0)

    def _fits_on_disk(self, size: int) -> bool:
        usage = shutil.disk_usage(self._folder())
        reserve = self.reserve if self.reserve is not None else max(2**30, usage.total // 20)
        return usage.free - size >= reserve

    def _folder(self) -> str:
        if self.folder is None:
            if self.parent is not None:
                Path(self.parent).mkdir(parents=True, exist_ok=True)
            self.folder = tempfile.mkdtemp(prefix="mlaas4hep-cache-", dir=self.parent)
            self._remove = weakref.finalize(self, shutil.rmtree, self.folder, True)
        return self.folder

    def _drop(self, units: list[Unit]) -> None:
        for unit in units:
            entry = self._units.pop(unit)
            if isinstance(entry, _OnDisk):
                self.disk_bytes -= entry.nbytes
                with contextlib.suppress(OSError):
                    Path(entry.path).unlink(missing_ok=True)  # a pass mapping it keeps its pages
            else:
                self.memory_bytes -= _nbytes(entry)

    # --- state -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._units)

    def __contains__(self, unit: object) -> bool:
        return unit in self._units

    def clear(self) -> None:
        """Drop every unit and remove the cache's folder (it is made again when needed)."""
        with self._lock:
            self._units = {}
            self._asked = set()
            self._stamps = {}
            self._key = None
            self.memory_bytes = self.disk_bytes = 0
            self.full = None
            if self._remove is not None:
                self._remove()  # removes the folder now, and not again at exit
            self._remove = None
            self.folder = None

    def describe(self) -> dict[str, Any]:
        """What the cache holds and where, and how the latest pass used it."""
        with self._lock:
            on_disk = sum(isinstance(entry, _OnDisk) for entry in self._units.values())
            return {
                "mode": self.mode,
                "units": len(self._units),
                "in_memory": len(self._units) - on_disk,
                "on_disk": on_disk,
                "bytes": self.memory_bytes + self.disk_bytes,
                "memory_bytes": self.memory_bytes,
                "disk_bytes": self.disk_bytes,
                "limit": self.bound,
                "path": self.folder,
                "hits": self.hits,
                "reads": self.reads,
                "left_out": self.left_out,
                "reason": self.reason or (self.full if self.reads else None),
                "full": self.full,
                # the next pass over the units of the latest one reads no file
                "complete": bool(self._asked) and all(u in self._units for u in self._asked),
            }

    def __repr__(self) -> str:
        info = self.describe()
        where = f", files in {info['path']}" if info["path"] else ""
        return (
            f"UnitCache({info['mode']}: {info['units']} units, {info['bytes'] / 2**20:.1f} MiB"
            f"{where})"
        )
