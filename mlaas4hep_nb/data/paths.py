"""Turn what users type (paths, globs, URLs, lists, logical file names) into file lists."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, MutableMapping
from pathlib import Path
from typing import Union

import fsspec

from ..errors import SourceError

__all__ = ["PathLike", "expand", "file_identity", "is_remote", "user_cache_dir"]

PathLike = Union[str, os.PathLike[str], Iterable[Union[str, os.PathLike[str]]]]  # noqa: UP007 (runtime alias on 3.10)

_REMOTE_PREFIXES = ("root://", "xroot://", "http://", "https://")
_GLOB_CHARS = set("*?[")


def __dir__() -> list[str]:
    return __all__


def user_cache_dir() -> Path:
    """The package's cache folder: ``$MLAAS4HEP_NB_CACHE`` or ``~/.cache/mlaas4hep_nb``."""
    base = os.environ.get("MLAAS4HEP_NB_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mlaas4hep_nb"
    )
    return Path(base)


def is_remote(path: str) -> bool:
    """True for ``root://``, ``xroot://``, ``http://`` and ``https://`` URLs."""
    return path.startswith(_REMOTE_PREFIXES)


def _with_redirector(path: str, redirector: str | None) -> str:
    # MLaaS4HEP convention: logical file names (/store/...) are read through a redirector.
    if redirector and path.startswith("/store/"):
        return f"{redirector.rstrip('/')}/{path}"
    return path


def _glob(pattern: str) -> list[str]:
    if is_remote(pattern):
        fs, stripped = fsspec.core.url_to_fs(pattern)
        try:
            return [fs.unstrip_protocol(match) for match in sorted(fs.glob(stripped))]
        except OSError as err:
            msg = f"cannot list {pattern}: {err}"
            raise SourceError(msg) from err
    return sorted(glob.glob(os.path.expanduser(pattern)))


def expand(paths: PathLike, redirector: str | None = None) -> list[str]:
    """Expand a path, URL, glob or a list of them into an ordered list of files.

    Globs are sorted; duplicates keep their first place. A glob that matches
    nothing and a local file that does not exist raise `SourceError`.
    """
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    files: list[str] = []
    for item in items:
        path = _with_redirector(os.fspath(item), redirector)
        if _GLOB_CHARS & set(path.split("://", 1)[-1]):
            matches = _glob(path)
            if not matches:
                msg = f"no file matches {path!r}"
                raise SourceError(msg)
        else:
            if not is_remote(path) and not os.path.exists(os.path.expanduser(path)):
                msg = f"ROOT file not found: {path}"
                raise SourceError(msg)
            matches = [path if is_remote(path) else os.path.expanduser(path)]
        files.extend(match for match in matches if match not in files)
    if not files:
        msg = "no input files given"
        raise SourceError(msg)
    return files


def file_identity(
    path: str, sizes: MutableMapping[str, int] | None = None
) -> dict[str, str | int | None]:
    """What identifies a file's content cheaply: size and mtime (local) or size (remote).

    ``sizes`` holds the sizes of remote files known already (path -> bytes):
    a remote file found there is not asked again, one asked here is added.
    """
    if is_remote(path):
        if sizes is not None and path in sizes:
            return {"path": path, "size": sizes[path]}
        fs, stripped = fsspec.core.url_to_fs(path)
        try:
            info = fs.info(stripped)
        except OSError as err:
            msg = f"cannot reach {path}: {err}"
            raise SourceError(msg) from err
        if sizes is not None and info.get("size") is not None:
            sizes[path] = int(info["size"])
        return {"path": path, "size": info.get("size")}
    stat = os.stat(path)
    return {"path": os.path.abspath(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
