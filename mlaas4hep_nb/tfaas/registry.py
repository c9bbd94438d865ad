"""The model store: served models in memory, each one a folder ``MODEL_DIR/<name>``.

A re-upload is loaded and checked in its own staging folder first; only then
are the folders swapped by rename and the in-memory entry replaced, so a
request is answered wholly by the old model or wholly by the new one. Folders
starting with a dot are the store's own: ``.upload-*`` staging areas and
``.old-*`` folders on their way out (put back at start-up when a crash left a
model without its folder).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import uuid
from pathlib import Path

from ..bundle import PARAMS_FILE
from .errors import RequestError
from .model import BundleError, ServedModel
from .names import valid_name

__all__ = ["ModelRegistry"]

log = logging.getLogger(__name__)

_OLD = ".old-"
_UPLOAD = ".upload-"


def __dir__() -> list[str]:
    return __all__


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
        self._stamps: dict[str, int] = {}  # the inode of each model's folder when loaded
        self._lock = threading.Lock()
        self.default: str | None = None

    def __contains__(self, name: str) -> bool:
        return name in self._models

    def names(self) -> list[str]:
        return sorted(self._models)

    def models(self) -> list[ServedModel]:
        return [self._models[name] for name in self.names()]

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

    def load_all(self) -> list[str]:
        """Load every model folder; recover or drop what an interrupted swap left."""
        for path in sorted(self.root.iterdir()):
            if path.name.startswith(_UPLOAD):
                shutil.rmtree(path, ignore_errors=True)
            elif path.name.startswith(_OLD):
                name = path.name[len(_OLD) + 32 + 1 :]
                if valid_name(name) and not (self.root / name).exists():
                    path.rename(self.root / name)
                else:
                    shutil.rmtree(path, ignore_errors=True)
        for path in sorted(self.root.iterdir()):
            if not (valid_name(path.name) and (path / PARAMS_FILE).is_file()):
                continue
            try:
                self._models[path.name] = ServedModel(path, path.name)
                self._stamps[path.name] = path.stat().st_ino
            except BundleError as err:
                log.warning("not serving %s: %s", path, err)
        return self.names()

    def refresh(self) -> bool:
        """Load models that another process installed or replaced; drop those it deleted.

        Returns True if anything changed.
        """
        on_disk = {}
        for path in self.root.iterdir():
            if valid_name(path.name) and (path / PARAMS_FILE).is_file():
                on_disk[path.name] = path.stat().st_ino
        changed = False
        for name in set(self._models) - set(on_disk):
            with self._lock:
                self._models.pop(name, None)
                self._stamps.pop(name, None)
            changed = True
        for name, stamp in on_disk.items():
            if self._stamps.get(name) == stamp:
                continue
            try:
                model = ServedModel(self.root / name, name)
            except (BundleError, OSError) as err:  # caught mid-swap: try again next time
                log.warning("not serving %s yet: %s", name, err)
                continue
            with self._lock:
                self._models[name] = model
                self._stamps[name] = stamp
            changed = True
        return changed

    def staging(self) -> Path:
        """A new, private folder inside the model dir for one upload to unpack into."""
        return Path(tempfile.mkdtemp(prefix=_UPLOAD, dir=self.root))

    def _retire(self, name: str) -> Path | None:
        current = self.root / name
        if not current.exists():
            return None
        old = self.root / f"{_OLD}{uuid.uuid4().hex}-{name}"
        current.rename(old)
        return old

    def install(self, name: str, folder: Path, model: ServedModel) -> None:
        """Serve ``model`` (loaded from ``folder``) as ``name``, replacing any previous one."""
        with self._lock:
            old = self._retire(name)
            folder.rename(self.root / name)
            model.path = self.root / name
            self._models[name] = model
            self._stamps[name] = model.path.stat().st_ino
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def delete(self, name: str) -> None:
        """Stop serving ``name`` and remove its folder (404 if there is no such model)."""
        with self._lock:
            model = self._models.pop(name, None)
            self._stamps.pop(name, None)
            old = self._retire(name) if valid_name(name) else None
            if self.default == name:
                self.default = None
        if model is None and old is None:
            raise RequestError(404, f"unknown model {name!r}; served: {self.names()}")
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
