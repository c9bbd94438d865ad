"""MLaaS4HEP's ``params.json``: its keys mapped onto DataStream and Trainer arguments.

MLaaS4HEP (vkuznet/MLaaS4HEP) configures a training job with a JSON file such as::

    {"nevts": 30000, "shuffle": true, "chunk_size": 10000, "epochs": 5,
     "batch_size": 256, "branch": "Events", "selected_branches": "",
     "exclude_branches": "", "identifier": ["run", "event", "luminosityBlock"],
     "redirector": "root://cms-xrd-global.cern.ch", "hist": "pdfs", "verbose": 1}

`load_mlaas_params` accepts such a file (or dict) and rejects unknown keys.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["KNOWN_KEYS", "MLaaSParams", "ParamsError", "load_mlaas_params"]

# key -> (where it goes, argument name); None: accepted for compatibility, not used
_MAPPING: dict[str, tuple[str, str] | None] = {
    "nevts": ("trainer", "max_events"),
    "chunk_size": ("stream", "chunk_size"),
    "batch_size": ("stream", "batch_size"),
    "shuffle": ("stream", "shuffle"),
    "epochs": ("trainer", "epochs"),
    "branch": ("stream", "tree"),
    "selected_branches": ("stream", "branches"),
    "exclude_branches": ("stream", "exclude"),
    "identifier": ("stream", "exclude"),
    "redirector": ("stream", "redirector"),
    "split": ("stream", "validation_fraction"),
    "verbose": ("stream", "progress"),
    # MLaaS4HEP writes histograms as PDFs and fills NaN with a value; here NaN is 0 and masked
    "hist": None,
    "nan": None,
}
KNOWN_KEYS = tuple(_MAPPING)


def __dir__() -> list[str]:
    return __all__


class ParamsError(ValueError):
    """An MLaaS4HEP parameter file with an unknown key or a value of the wrong type."""


@dataclass(frozen=True)
class MLaaSParams:
    """MLaaS4HEP parameters as keyword arguments of `DataStream` and `Trainer`.

    Attributes
    ----------
    stream : keyword arguments for ``DataStream``.
    trainer : keyword arguments for ``Trainer``.
    ignored : keys accepted for compatibility that have no effect here.
    """

    stream: dict[str, Any] = field(default_factory=dict)
    trainer: dict[str, Any] = field(default_factory=dict)
    ignored: tuple[str, ...] = ()


def _names(value: Any, key: str, where: str) -> list[str]:
    """A branch list given as a list, a comma-separated string or a file of one name a line."""
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    if isinstance(value, str):
        if Path(value).is_file():
            lines = Path(value).read_text().splitlines()
            return [line.strip() for line in lines if line.strip() and not line.startswith("#")]
        return [name.strip() for name in value.split(",") if name.strip()]
    msg = f"{where}: {key!r} must be a list of branch names or a comma-separated string"
    raise ParamsError(msg)


def _value(key: str, value: Any, where: str) -> Any:
    if key in ("selected_branches", "exclude_branches", "identifier"):
        return _names(value, key, where)
    if key in ("nevts", "chunk_size", "batch_size", "epochs"):
        if isinstance(value, bool) or not isinstance(value, int):
            msg = f"{where}: {key!r} must be an integer, not {value!r}"
            raise ParamsError(msg)
        return None if key == "nevts" and value < 0 else value
    if key in ("shuffle", "verbose"):
        return bool(value)
    if key == "split":
        return float(value)
    return value


def load_mlaas_params(source: str | os.PathLike | Mapping[str, Any]) -> MLaaSParams:
    """Read MLaaS4HEP parameters from a JSON file or a dict.

    Raises
    ------
    ParamsError
        No such file, not JSON, a key MLaaS4HEP does not define (the message lists
        the known keys), or a value of the wrong type.
    """
    where = "params" if isinstance(source, Mapping) else str(source)
    if isinstance(source, Mapping):
        params = dict(source)
    else:
        try:
            params = json.loads(Path(source).read_text())
        except FileNotFoundError:
            msg = f"params file {source} not found"
            raise ParamsError(msg) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            msg = f"{source} is not valid JSON: {err}"
            raise ParamsError(msg) from err
        if not isinstance(params, dict):
            msg = f"{source} must hold a JSON object of MLaaS4HEP parameters"
            raise ParamsError(msg)
    unknown = sorted(set(params) - set(_MAPPING))
    if unknown:
        msg = (
            f"unknown MLaaS4HEP parameter(s) {', '.join(map(repr, unknown))} in {where}; "
            f"known keys: {', '.join(KNOWN_KEYS)}"
        )
        raise ParamsError(msg)
    result = MLaaSParams()
    ignored = []
    for key, value in params.items():
        target = _MAPPING[key]
        if target is None:
            ignored.append(key)
            continue
        part, name = target
        kwargs = result.stream if part == "stream" else result.trainer
        value = _value(key, value, where)
        if name == "branches" and not value:
            continue  # "" selects every branch, as in MLaaS4HEP
        if name == "exclude":
            value = [*kwargs.get("exclude", ()), *value]
        kwargs[name] = value
    if "exclude" in result.stream:
        from ..data.scan import DEFAULT_EXCLUDE  # imports uproot: not when the CLI starts

        # identifiers and excluded branches add to the default exclusions (run, event, ...)
        result.stream["exclude"] = list(
            dict.fromkeys([*DEFAULT_EXCLUDE, *result.stream["exclude"]])
        )
    return MLaaSParams(result.stream, result.trainer, tuple(ignored))
