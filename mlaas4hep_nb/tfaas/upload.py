"""Turn an upload, in either of upstream TFaaS's formats, into a bundle folder in staging.

- a gzipped tarball (the raw request body) whose top-level folder is the
  model name and holds the SavedModel, ``params.json`` and ``labels.txt``;
- a multipart form with the field ``name`` and the parts ``model`` (a tar,
  tar.gz or zip of the SavedModel, or a bare ``saved_model.pb``), ``params``,
  ``labels`` and optionally ``op``.

Nothing here loads TensorFlow; the caller loads the staged folder.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path

from ..bundle import LABELS_FILE, PARAMS_FILE
from .errors import RequestError
from .model import find_saved_model
from .names import check_name
from .pack import compatible_params
from .params_schema import ParamsError, check_params
from .unpack import ArchiveError, TooLargeError, archive_kind, unpack

__all__ = ["stage_form", "stage_tarball"]


def __dir__() -> list[str]:
    return __all__


def _unpack(data: bytes, dest: Path, max_bytes: int) -> list[str]:
    try:
        return unpack(data, dest, max_bytes)
    except TooLargeError as err:
        raise RequestError(413, str(err)) from None
    except ArchiveError as err:
        raise RequestError(400, f"bad upload: {err}") from None


def _name(name: object) -> str:
    try:
        return check_name(name)
    except ValueError as err:
        raise RequestError(400, str(err)) from None


def stage_tarball(data: bytes, staging: Path, max_bytes: int) -> tuple[str, Path]:
    """Unpack a bundle tarball into ``staging``; return the model name and its folder."""
    if not data:
        raise RequestError(400, "empty upload: send a bundle tarball or a multipart form")
    top = _unpack(data, staging, max_bytes)
    if len(top) != 1 or not (staging / top[0]).is_dir():
        raise RequestError(
            400, f"the tarball must hold one top-level folder named after the model, not {top}"
        )
    name = _name(top[0])
    folder = staging / name
    if not (folder / PARAMS_FILE).is_file():
        raise RequestError(400, f"the bundle {name!r} has no {PARAMS_FILE}")
    if find_saved_model(folder) != folder:
        raise RequestError(400, f"the bundle {name!r} has no saved_model.pb at its top level")
    return name, folder


async def _read_part(part: object) -> bytes:
    if isinstance(part, str):
        return part.encode()
    read = getattr(part, "read", None)
    if read is None:
        raise RequestError(400, "a form part is neither a file nor a field")
    return await read()


def _params(data: bytes, name: str) -> dict:
    try:
        params = check_params(json.loads(data))
    except RecursionError:
        raise RequestError(400, "the params part nests its JSON too deeply") from None
    except ParamsError as err:
        raise RequestError(400, f"the params part: {err}") from None
    except ValueError as err:  # UnicodeDecodeError too
        raise RequestError(400, f"the params part is not JSON: {err}") from None
    if params.get("name") not in (None, "", name):
        raise RequestError(
            400, f"the form names the model {name!r} but params.json says {params['name']!r}"
        )
    return params


async def stage_form(form: Mapping, staging: Path, max_bytes: int) -> tuple[str, Path]:
    """Write the parts of an upstream upload form as a bundle folder in ``staging``."""
    name = _name(form.get("name"))
    missing = [part for part in ("model", "params", "labels") if part not in form]
    if missing:
        raise RequestError(400, f"the upload form lacks the parts {missing}")
    params = _params(await _read_part(form["params"]), name)
    folder = staging / name
    model = await _read_part(form["model"])
    if archive_kind(model):
        _unpack(model, folder, max_bytes)
        found = find_saved_model(folder)
        if found is None:
            raise RequestError(400, "the model part holds no saved_model.pb")
        if found != folder:  # the archive wrapped the SavedModel in a folder
            for child in found.iterdir():
                child.rename(folder / child.name)
            shutil.rmtree(found)
    else:
        folder.mkdir(parents=True)
        (folder / "saved_model.pb").write_bytes(model)
    (folder / LABELS_FILE).write_bytes(await _read_part(form["labels"]))
    params["labels"] = LABELS_FILE
    if "op" in form:
        op = (await _read_part(form["op"])).decode(errors="replace").strip()
        if op and "\n" not in op and len(op) < 256:
            params["op"] = op
    (folder / PARAMS_FILE).write_text(json.dumps(compatible_params(params, name), indent=1))
    return name, folder
