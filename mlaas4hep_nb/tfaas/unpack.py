"""Safe extraction of uploaded tar (plain or gzipped) and zip archives.

Every member is checked before anything is written: an absolute path, a
``..`` component, a link, a device or any other special file rejects the
whole archive, and so does a total unpacked size over the limit (a
decompression bomb). Only plain files and folders are then written, below
the destination and nowhere else.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

__all__ = ["ArchiveError", "TooLargeError", "archive_kind", "unpack"]

_CHUNK = 1 << 20


def __dir__() -> list[str]:
    return __all__


class ArchiveError(ValueError):
    """An archive that is not a tar or zip, is corrupt, or holds an unsafe member."""


class TooLargeError(ArchiveError):
    """An archive that unpacks to more bytes than allowed."""


@dataclass(frozen=True)
class _Member:
    parts: tuple[str, ...]
    is_dir: bool
    size: int
    source: object  # the TarInfo or ZipInfo to read the content from


def archive_kind(data: bytes) -> str | None:
    """``"tar"`` (plain or gzipped), ``"zip"`` or None, from the first bytes."""
    if data[:2] == b"\x1f\x8b" or data[257:262] == b"ustar":
        return "tar"
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    return None


def _safe_parts(name: str, archive: str) -> tuple[str, ...]:
    if "\x00" in name or "\\" in name:
        msg = f"{archive} member {name!r} has a NUL or backslash in its name"
        raise ArchiveError(msg)
    path = PurePosixPath(name)
    if path.is_absolute():
        msg = f"{archive} member {name!r} has an absolute path"
        raise ArchiveError(msg)
    parts = tuple(part for part in path.parts if part not in ("", "."))
    if ".." in parts:
        msg = f"{archive} member {name!r} climbs out of the archive with '..'"
        raise ArchiveError(msg)
    return parts


def _tar_members(tar: tarfile.TarFile) -> list[_Member]:
    members = []
    for info in tar.getmembers():
        parts = _safe_parts(info.name, "tar")
        if info.issym() or info.islnk():
            msg = f"tar member {info.name!r} is a link; links are not allowed"
            raise ArchiveError(msg)
        if not (info.isfile() or info.isdir()):
            msg = f"tar member {info.name!r} is a device or special file; only files and folders"
            raise ArchiveError(msg)
        members.append(_Member(parts, info.isdir(), info.size if info.isfile() else 0, info))
    return members


def _zip_members(archive: zipfile.ZipFile) -> list[_Member]:
    members = []
    for info in archive.infolist():
        parts = _safe_parts(info.filename, "zip")
        kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the zip tool wrote no type
        is_dir = info.is_dir()
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            what = "a link" if kind == stat.S_IFLNK else "a device or special file"
            msg = f"zip member {info.filename!r} is {what}; only files and folders"
            raise ArchiveError(msg)
        members.append(_Member(parts, is_dir, 0 if is_dir else info.file_size, info))
    return members


def _check(members: list[_Member], max_bytes: int) -> None:
    if not members:
        msg = "the archive is empty"
        raise ArchiveError(msg)
    total = sum(member.size for member in members)
    if total > max_bytes:
        msg = f"the archive unpacks to {total} bytes, more than the limit of {max_bytes}"
        raise TooLargeError(msg)
    files = {member.parts for member in members if not member.is_dir}
    for member in members:
        # a file used as a folder by another member would make extraction fail half way
        for i in range(1, len(member.parts)):
            if member.parts[:i] in files:
                msg = f"archive member {'/'.join(member.parts)!r} is below a file"
                raise ArchiveError(msg)


def _copy(source: IO[bytes], target: Path, size: int) -> None:
    written = 0
    with target.open("xb") as out:
        while chunk := source.read(_CHUNK):
            written += len(chunk)
            if written > size:
                # the header lied about the size: never write more than was checked
                msg = f"archive member {target.name!r} holds more bytes than its header says"
                raise ArchiveError(msg)
            out.write(chunk)
    target.chmod(0o644)


def _write(members: list[_Member], dest: Path, read) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for member in sorted(members, key=lambda m: m.parts):
        if not member.parts:
            continue
        target = dest.joinpath(*member.parts)
        if member.is_dir:
            target.mkdir(mode=0o755, parents=True, exist_ok=True)
            continue
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        if target.exists():
            target.unlink()  # a later duplicate member wins, as with tar
        with read(member.source) as source:
            _copy(source, target, member.size)


def unpack(data: bytes, dest: str | os.PathLike, max_bytes: int = 4 << 30) -> list[str]:
    """Unpack the tar, tar.gz or zip archive ``data`` into the folder ``dest``.

    Parameters
    ----------
    data : the archive's bytes.
    dest : an empty or new folder; nothing is written outside it.
    max_bytes : the most bytes the members may unpack to.

    Returns
    -------
    The names of the top-level entries written, sorted.

    Raises
    ------
    ArchiveError
        If ``data`` is not an archive, is corrupt, or holds an unsafe member;
        then nothing at all was written.
    TooLargeError
        If the members add up to more than ``max_bytes``.
    """
    dest = Path(dest)
    kind = archive_kind(data)
    if kind is None:
        msg = "not a tar, tar.gz or zip archive"
        raise ArchiveError(msg)
    opened = False
    try:
        if kind == "tar":
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
                members = _tar_members(tar)
                _check(members, max_bytes)
                opened = True
                _write(members, dest, tar.extractfile)
        else:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                members = _zip_members(archive)
                _check(members, max_bytes)
                opened = True
                _write(members, dest, archive.open)
    except ArchiveError:
        if opened:
            _empty(dest)
        raise
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, ValueError) as err:
        if opened:
            _empty(dest)
        msg = f"corrupt {kind} archive: {err}"
        raise ArchiveError(msg) from err
    return sorted({member.parts[0] for member in members if member.parts})


def _empty(folder: Path) -> None:
    """Remove what a failed extraction wrote, keeping the folder itself."""
    if folder.is_dir():
        for child in folder.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
