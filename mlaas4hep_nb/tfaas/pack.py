"""Pack a bundle folder as the gzipped tarball that upstream TFaaS and this server load."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

from ..bundle import LABELS_FILE, PARAMS_FILE, read_params
from .names import check_name

__all__ = ["KEY_SPELLINGS", "compatible_params", "pack_bundle"]

# upstream versions read one spelling or the other; a bundle carries both
KEY_SPELLINGS = (
    ("input_node", "inputNode"),
    ("output_node", "outputNode"),
    ("input_name", "inputName"),
    ("output_name", "outputName"),
    ("img_channels", "imgChannels"),
)
_DEFAULTS = {"model": "saved_model.pb", "labels": LABELS_FILE, "op": "serving_default"}


def __dir__() -> list[str]:
    return __all__


def compatible_params(params: dict, name: str) -> dict:
    """``params`` named ``name``, with both spellings of every key that upstream reads."""
    out = {**_DEFAULTS, **params, "name": name}
    for snake, camel in KEY_SPELLINGS:
        value = out.get(snake, out.get(camel))
        if value is not None:
            out[snake] = out[camel] = value
    return out


def pack_bundle(bundle_dir: str | os.PathLike, name: str | None = None) -> tuple[str, bytes]:
    """Tar and gzip a bundle folder under the top folder ``name``.

    Parameters
    ----------
    bundle_dir : a folder with a SavedModel (``saved_model.pb``, ``variables/``)
        and ``params.json``.
    name : the model name; by default the ``name`` in ``params.json``, else the
        folder's name.

    Returns
    -------
    The model name and the ``.tar.gz`` bytes. ``params.json`` in the tarball
    carries that name and both key spellings.
    """
    bundle = Path(bundle_dir)
    params = read_params(bundle)
    name = check_name(name or params.get("name") or bundle.resolve().name)
    params_bytes = json.dumps(compatible_params(params, name), indent=1).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as tar:
        top = tarfile.TarInfo(name)
        top.type, top.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(top)
        for path in sorted(bundle.rglob("*")):
            relative = path.relative_to(bundle).as_posix()
            if path.is_symlink() or relative == PARAMS_FILE:
                continue
            tar.add(path, arcname=f"{name}/{relative}", recursive=False)
        info = tarfile.TarInfo(f"{name}/{PARAMS_FILE}")
        info.size, info.mode = len(params_bytes), 0o644
        tar.addfile(info, io.BytesIO(params_bytes))
    return name, buffer.getvalue()
