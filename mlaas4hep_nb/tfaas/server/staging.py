"""The model dir's own folders (names starting with a dot): who owns each, and when it may go.

Several processes share one model dir (``serve --workers N``, or servers on
hosts that mount it), so a process must never remove a folder that another
one is still writing. Each folder that the store makes while it works is
named after its owner, ``<pid>-<host>-<unix time>``:

- ``.upload-<owner>-<random>``: an upload unpacking and loading;
- ``.old-<owner>-<random>-<model>``: the previous version during a re-upload's
  swap (two renames);
- ``.deleted-<owner>-<random>-<model>``: a deleted model on its way out.

A folder is abandoned when its owner is gone (on this host, ``os.kill(pid,
0)`` finds no process, or a zombie), or when it is older than `MAX_AGE`
whatever its PID says (PIDs are reused, and another host's cannot be asked).
Names without an owner come from versions before this scheme and count as
abandoned. `tidy` removes abandoned staging, a ``.deleted-`` folder at any
time, and an ``.old-`` folder once its model is back in place; an abandoned
``.old-`` folder whose model folder is missing (a crash between the two
renames) is put back, so the old version is served whole.

Swaps, deletes and scans of the dir hold `dir_lock` (``flock`` on
``.lock``, released by the kernel when a process dies): no scan sees a model
half way through a swap, and a missing model with its ``.old-`` folder seen
under the lock is a swap whose owner died.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from ..names import valid_name

fcntl: ModuleType | None
try:
    import fcntl
except ImportError:  # Windows: no flock; one process per model dir there
    fcntl = None

__all__ = ["LOCK_FILE", "MAX_AGE", "dir_lock", "retired_name", "staging_prefix", "tidy"]

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
MAX_AGE = 3600.0  # seconds: no upload or swap takes this long
_HOST = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:32]
_OWNED = re.compile(r"\.(upload|old|deleted)-(\d+)-([A-Za-z0-9_]*)-(\d+)-(.+)", re.DOTALL)
_LEGACY_OLD = re.compile(r"\.old-[0-9a-f]{32}-(.+)", re.DOTALL)


def __dir__() -> list[str]:
    return __all__


@dataclass(frozen=True)
class _Entry:
    kind: str  # "upload", "old" or "deleted"
    pid: int | None  # None: no owner in the name (an older version's)
    host: str
    created: float
    model: str | None  # for "old" and "deleted"


def _owner() -> str:
    return f"{os.getpid()}-{_HOST}-{int(time.time())}"


def staging_prefix() -> str:
    """The name prefix of a new staging folder owned by this process."""
    return f".upload-{_owner()}-"


def retired_name(kind: str, model: str) -> str:
    """A fresh name for the folder of ``model`` on its way out: ``kind`` "old" or "deleted"."""
    return f".{kind}-{_owner()}-{uuid.uuid4().hex[:12]}-{model}"


def _parse(name: str) -> _Entry | None:
    """What a dot-folder of the store is; None for anything else (left alone)."""
    match = _OWNED.fullmatch(name)
    if match:
        kind, pid, host, created, rest = match.groups()
        model = rest.split("-", 1)[1] if kind != "upload" and "-" in rest else None
        return _Entry(kind, int(pid), host, float(created), model)
    if name.startswith(".upload-"):
        return _Entry("upload", None, "", 0.0, None)
    legacy = _LEGACY_OLD.fullmatch(name)
    if legacy:
        return _Entry("old", None, "", 0.0, legacy.group(1))
    return None


def _alive(pid: int) -> bool:
    """Whether process ``pid`` of this host runs (a zombie, killed but not reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: trust os.kill
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def _abandoned(entry: _Entry, now: float) -> bool:
    if entry.pid is None or now - entry.created > MAX_AGE:
        return True
    return entry.host == _HOST and not _alive(entry.pid)


@contextlib.contextmanager
def dir_lock(root: Path) -> Iterator[None]:
    """Hold the model dir's exclusive lock (other processes' and threads' swaps and scans wait)."""
    if fcntl is None:
        yield
        return
    try:
        fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:  # a read-only model dir: nobody can swap anything in it
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def tidy(root: Path) -> set[str]:
    """Remove or put back what dead owners left in ``root`` (hold `dir_lock`).

    Returns the models whose folder is missing while a live owner's ``.old-``
    folder waits (a swap that another host runs without the lock): their
    last version is to be kept serving.
    """
    now = time.time()
    waiting = set()
    for path in sorted(root.iterdir()):
        entry = _parse(path.name)
        if entry is None:
            continue
        if entry.kind == "old" and not (root / str(entry.model)).exists():
            if not _abandoned(entry, now):
                waiting.add(str(entry.model))
            elif valid_name(entry.model):
                log.warning("putting back %s as %s: its swap was interrupted", path, entry.model)
                _rename(path, root / str(entry.model))
            else:
                shutil.rmtree(path, ignore_errors=True)
        elif entry.kind != "upload" or _abandoned(entry, now):
            shutil.rmtree(path, ignore_errors=True)  # done with, or its owner is gone
    return waiting


def _rename(source: Path, target: Path) -> None:
    try:
        source.rename(target)
    except OSError as err:
        log.warning("could not put back %s: %s", source, err)
