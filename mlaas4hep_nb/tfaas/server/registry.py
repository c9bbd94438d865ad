"""The model store: served models in memory, each one a folder ``MODEL_DIR/<name>``.

A re-upload is loaded and checked in its own staging folder first; only then
are the folders swapped by rename and the in-memory entry replaced, so a
request is answered wholly by the old model or wholly by the new one. Folders
starting with a dot are the store's own (staging, a previous version on its
way out): `mlaas4hep_nb.tfaas.server.staging` names them after their owner process
and tidies them once it is gone, putting back a model whose swap was cut
short. A folder that is not a loadable bundle is skipped and reported, never
fatal to the others.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import RequestError
from ..names import valid_name
from .model import BundleError, ServedModel
from .staging import dir_lock, retired_name, staging_prefix, tidy
from .testhooks import pause

__all__ = ["ModelRegistry"]

log = logging.getLogger(__name__)

# a folder's inode and mtime: which version of a model folder is on disk (a
# swap renames another folder into place; mtime tells apart a reused inode)
_Stamp = tuple[int, int]

# models loaded at once at start-up and on refresh: loading is mostly TensorFlow
# C++ (graph import, variable restore) that releases the GIL; 40 small models
# load in 1.95 s one by one, 1.12 s with 2 threads, 0.86 s with 4 (2 cores)
LOAD_THREADS = 4


def __dir__() -> list[str]:
    return __all__


def _stamp(path: Path) -> _Stamp | None:
    """The stamp of the folder ``path``; None if it is missing or not a folder."""
    try:
        info = path.stat()
    except OSError:
        return None
    return (info.st_ino, info.st_mtime_ns) if path.is_dir() else None


class ModelRegistry:
    """Served models by name, persisted in ``model_dir``.

    Parameters
    ----------
    model_dir : the folder holding one sub-folder per model; created if missing.
    """

    def __init__(self, model_dir: str | os.PathLike) -> None:
        self.root = Path(model_dir).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._models: dict[str, ServedModel] = {}
        # of each served model's folder when loaded; None if the folder was gone when install
        # stamped it (refresh then drops the model, or reloads a folder found there again)
        self._stamps: dict[str, _Stamp | None] = {}
        self._skipped: dict[str, tuple[_Stamp, str]] = {}  # folders that failed, and why
        self._lock = threading.Lock()
        self.default: str | None = None

    def __contains__(self, name: str) -> bool:
        return name in self._models

    def names(self) -> list[str]:
        return sorted(self._models)

    def models(self) -> list[ServedModel]:
        # one pass over the dict: another thread's refresh may drop a model meanwhile
        return [model for _, model in sorted(self._models.items())]

    def get(self, name: str | None) -> ServedModel:
        """The model ``name``, or the default one when ``name`` is None (404/400 otherwise)."""
        if name is None:
            name = self.default if self.default in self._models else None
            if name is None and len(self._models) == 1:
                name = next(iter(self._models))
            if name is None:
                raise RequestError(400, 'no "model" given and no default model set')
        model = self._models.get(name)
        if model is None:
            raise RequestError(404, f"unknown model {name!r}; served: {self.names()}")
        return model

    @property
    def skipped(self) -> dict[str, str]:
        """Model folders that are not served, each with why (``/status`` lists them)."""
        return {name: why for name, (_, why) in sorted(self._skipped.items())}

    def _scan(self) -> tuple[dict[str, _Stamp], set[str]]:
        """The model folders and their stamps, after tidying what dead processes left.

        Also the models whose folder a live owner is swapping (see `tidy`).
        """
        with dir_lock(self.root):
            waiting = tidy(self.root)
            on_disk = {}
            for path in self.root.iterdir():
                stamp = _stamp(path)
                if valid_name(path.name) and stamp is not None:
                    on_disk[path.name] = stamp
        return on_disk, waiting

    def _load(self, name: str, stamp: _Stamp, expected: _Stamp | None) -> bool:
        """Load the folder ``name`` and serve it, unless it or the served one changed meanwhile.

        ``expected`` is the stamp of the version served when the scan began.
        A bad folder is logged and listed in `skipped`, never raised: one
        bad bundle must not stop the others from being served. Returns True
        if the model was installed.
        """
        path = self.root / name
        model, why = None, ""
        try:
            model = ServedModel(path, name)
        except BundleError as err:
            why = str(err)
        except Exception as err:  # a bundle that breaks the server's code: still not fatal
            why = f"{type(err).__name__}: {err}"
        if _stamp(path) != stamp:
            return False  # replaced while loading (maybe read half old, half new): next scan
        with self._lock:
            if self._stamps.get(name) != expected:
                return False  # this process installed or deleted it meanwhile
            if model is None:
                # as /status shows it: short, and UTF-8 even for odd bytes in paths
                self._skipped[name] = (stamp, why[:500].encode(errors="backslashreplace").decode())
                log.warning("not serving %s: %s", path, why)
                return False
            self._models[name] = model
            self._stamps[name] = stamp
            self._skipped.pop(name, None)
        return True

    def load_all(self) -> list[str]:
        """Load every model folder; recover or drop what interrupted uploads and swaps left.

        A folder that does not load is skipped (a log line and an entry in `skipped`).
        """
        on_disk, _ = self._scan()
        self._load_many([(name, stamp, None) for name, stamp in sorted(on_disk.items())])
        return self.names()

    def _load_many(self, jobs: list[tuple[str, _Stamp, _Stamp | None]]) -> bool:
        """`_load` each ``(name, stamp, expected)``, a few at once; True if any was installed."""
        if not jobs:
            return False
        with ThreadPoolExecutor(min(LOAD_THREADS, len(jobs)), "tfaas-load") as pool:
            installed = list(pool.map(lambda job: self._load(*job), jobs))
        return any(installed)

    def refresh(self) -> bool:
        """Load models that another process installed or replaced; drop those it deleted.

        Returns True if anything changed.
        """
        known = dict(self._stamps)
        on_disk, waiting = self._scan()
        changed = False
        for name in set(known) - set(on_disk) - waiting:
            with self._lock:
                if self._stamps.get(name) == known[name]:
                    self._models.pop(name, None)
                    self._stamps.pop(name, None)
                    changed = True
        for name in set(self._skipped) - set(on_disk):
            self._skipped.pop(name, None)
        jobs = []
        for name, stamp in sorted(on_disk.items()):
            failed = self._skipped.get(name)
            if stamp != known.get(name) and (failed is None or failed[0] != stamp):
                jobs.append((name, stamp, known.get(name)))
        return self._load_many(jobs) or changed

    def staging(self) -> Path:
        """A new, private folder inside the model dir for one upload to unpack into."""
        return Path(tempfile.mkdtemp(prefix=staging_prefix(), dir=self.root))

    def _retire(self, name: str, kind: str) -> Path | None:
        current = self.root / name
        if not current.exists():
            return None
        retired = self.root / retired_name(kind, name)
        current.rename(retired)
        return retired

    def install(self, name: str, folder: Path, model: ServedModel) -> None:
        """Serve ``model`` (loaded from ``folder``) as ``name``, replacing any previous one.

        The two renames of the swap hold the dir lock: another process's scan
        never finds the model missing, and a crash between them leaves the
        old folder as ``.old-...``, which the next scan puts back.
        """
        pause("staged")
        target = self.root / name
        with dir_lock(self.root):
            old = self._retire(name, "old")
            pause("swap")
            try:
                folder.rename(target)
            except OSError:
                if old is not None:
                    old.rename(target)
                raise
            model.path = target
            with self._lock:
                self._models[name] = model
                self._stamps[name] = _stamp(target)
                self._skipped.pop(name, None)
        pause("swapped")
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def delete(self, name: str) -> None:
        """Stop serving ``name`` and remove its folder (404 if there is no such model)."""
        with dir_lock(self.root), self._lock:
            model = self._models.pop(name, None)
            self._stamps.pop(name, None)
            self._skipped.pop(name, None)
            old = self._retire(name, "deleted") if valid_name(name) else None
            if self.default == name:
                self.default = None
        if model is None and old is None:
            raise RequestError(404, f"unknown model {name!r}; served: {self.names()}")
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
