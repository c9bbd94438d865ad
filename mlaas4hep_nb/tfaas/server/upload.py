"""Turn an upload, in either of upstream TFaaS's formats, into bundle folders in staging.

- a gzipped tarball (the raw request body) whose top-level folders are the
  model names, each holding a SavedModel (or a TF1 frozen graph),
  ``params.json`` and ``labels.txt``; a folder holding only a SavedModel gets
  params derived from its serving signature;
- a multipart form with the field ``name`` and the parts ``model`` (a tar,
  tar.gz or zip of the SavedModel, a bare ``saved_model.pb``, or a frozen
  graph), ``params``, ``labels`` and optionally ``op``. With the request
  header ``Content-Encoding: base64`` (upstream's Python client) the
  ``model`` part is base64 text, decoded as upstream decodes it.

Nothing here loads a model (TensorFlow's protobuf classes tell a SavedModel
from a frozen graph and give a bare SavedModel its params); the caller loads
the staged folders.
"""

from __future__ import annotations

import base64
import binascii
import json
import shutil
from collections.abc import Mapping
from pathlib import Path

from ...bundle import LABELS_FILE, PARAMS_FILE
from ..errors import RequestError
from ..names import check_name, valid_name
from ..pack import compatible_params
from ..unpack import ArchiveError, TooLargeError, archive_kind, unpack
from .derive import derive_params
from .frozen import is_saved_model
from .model import find_saved_model
from .params_schema import ParamsError, check_params

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


def stage_tarball(data: bytes, staging: Path, max_bytes: int) -> list[tuple[str, Path]]:
    """Unpack a tarball of bundle folders into ``staging``; return each model name and folder."""
    if not data:
        raise RequestError(400, "empty upload: send a bundle tarball or a multipart form")
    top = _unpack(data, staging, max_bytes)
    files = [entry for entry in top if not (staging / entry).is_dir()]
    if files:
        raise RequestError(
            400,
            f"the tarball must hold only folders named after the models, not the files {files}",
        )
    return [_stage_folder(staging, _name(entry)) for entry in top]


def _stage_folder(staging: Path, name: str) -> tuple[str, Path]:
    folder = staging / name
    found = find_saved_model(folder)
    if found not in (None, folder):
        where = found.relative_to(staging).as_posix()
        raise RequestError(
            400, f"the bundle {name!r} has its saved_model.pb in {where}/, not at its top level"
        )
    if not (folder / PARAMS_FILE).is_file():
        if found is None:
            raise RequestError(400, f"the bundle {name!r} has no {PARAMS_FILE} and no SavedModel")
        try:
            params = derive_params(folder, name)
        except ValueError as err:
            raise RequestError(400, str(err)) from None
        (folder / PARAMS_FILE).write_text(json.dumps(compatible_params(params, name), indent=1))
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


def _base64(data: bytes) -> bytes:
    """The ``model`` part of a ``Content-Encoding: base64`` form, decoded as upstream does.

    Upstream's Python client base64-encodes only parts it sends as
    ``application/octet-stream`` (a ``.pb``), yet sets the header whatever the
    model file; an archive (``.tar.gz``, ``.zip``), sent as it is, is kept.
    """
    try:  # Go's StdEncoding skips line breaks, and the client's encoder ends with one
        return base64.b64decode(data.replace(b"\r", b"").replace(b"\n", b""), validate=True)
    except (binascii.Error, ValueError):
        if archive_kind(data):
            return data
        raise RequestError(
            400, "the model part is not base64, but the request says Content-Encoding: base64"
        ) from None


def _model_file(part: object, params: dict) -> str:
    """What a frozen graph is stored as: the part's file name, as upstream keeps it."""
    filename = getattr(part, "filename", None) or params.get("model")
    base = str(filename).replace("\\", "/").rsplit("/", 1)[-1] if filename else ""
    return base if valid_name(base) and base not in (PARAMS_FILE, LABELS_FILE) else "model.pb"


async def stage_form(
    form: Mapping, staging: Path, max_bytes: int, base64_model: bool = False
) -> tuple[str, Path]:
    """Write the parts of an upstream upload form as a bundle folder in ``staging``.

    ``base64_model``: the request came with ``Content-Encoding: base64``.
    """
    name = _name(form.get("name"))
    missing = [part for part in ("model", "params", "labels") if part not in form]
    if missing:
        raise RequestError(400, f"the upload form lacks the parts {missing}")
    params = _params(await _read_part(form["params"]), name)
    folder = staging / name
    model = await _read_part(form["model"])
    if base64_model:
        model = _base64(model)
    if archive_kind(model):
        _unpack(model, folder, max_bytes)
        found = find_saved_model(folder)
        if found is None:
            raise RequestError(400, "the model part holds no saved_model.pb")
        if found != folder:  # the archive wrapped the SavedModel in a folder
            for child in found.iterdir():
                child.rename(folder / child.name)
            shutil.rmtree(found)
    elif is_saved_model(model):
        folder.mkdir(parents=True)
        (folder / "saved_model.pb").write_bytes(model)
    else:  # a TF1 frozen graph, found by params "model" as upstream finds it
        folder.mkdir(parents=True)
        params["model"] = _model_file(form["model"], params)
        (folder / params["model"]).write_bytes(model)
    (folder / LABELS_FILE).write_bytes(await _read_part(form["labels"]))
    params["labels"] = LABELS_FILE
    if "op" in form:
        op = (await _read_part(form["op"])).decode(errors="replace").strip()
        if op and "\n" not in op and len(op) < 256:
            params["op"] = op
    (folder / PARAMS_FILE).write_text(json.dumps(compatible_params(params, name), indent=1))
    return name, folder
