"""The schema of a bundle's ``params.json``, checked at upload and whenever a bundle is loaded.

Every key that this server or upstream TFaaS reads must hold its type (a
string where upstream's Go struct has a string, a list of strings for
``features``, a FeatureSpec object for ``spec`` ...); a bad one is refused
with a message that names the key and what it should hold.

Keys the server does not know are kept, since upstream bundles carry their
own, and echoed by ``/models`` and ``/params``. So that every reply can
carry them, any value anywhere must be JSON that other readers take back:
integers within 64 bits (orjson and Go's ``encoding/json`` refuse bigger
ones; write such a number as a string), finite numbers (no ``NaN`` or
``Infinity``), strings without lone surrogates, and at most `MAX_DEPTH`
levels of nesting. Such a value is refused, not rewritten: the bundle is
served as it was sent or not at all.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeGuard

from ...data.convert import NORMALIZATIONS

__all__ = ["MAX_DEPTH", "ParamsError", "check_params"]

MAX_DEPTH = 32
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1  # what orjson writes: int64 and uint64


def __dir__() -> list[str]:
    return __all__


class ParamsError(ValueError):
    """A ``params.json`` that breaks the schema; the message names the key."""


def _is_int(value: object) -> TypeGuard[int]:
    return type(value) is int


def _is_number(value: object) -> bool:
    return type(value) in (int, float)


def _is_text(value: object) -> bool:
    return isinstance(value, str)


def _is_file_name(value: object) -> bool:
    return isinstance(value, str) and "\x00" not in value


def _is_texts(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _is_text_map(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(item, str) for item in value.values())


def _or_null(test: Callable[[object], bool]) -> Callable[[object], bool]:
    return lambda value: value is None or test(value)


_Rule = tuple[Callable[[object], bool], str]
_TEXT: _Rule = (_or_null(_is_text), "a string or null")
_TEXTS: _Rule = (_or_null(_is_texts), "a list of strings or null")
_NORMALIZE: _Rule = (lambda value: value in NORMALIZATIONS, "one of 'minmax', 'standard', null")
_SPEC_OBJECT: _Rule = (lambda value: value is None or isinstance(value, dict), "an object or null")

# the keys read by this server (model.py), upstream TFaaS (Go) or written by bundle.py
_PARAMS: dict[str, _Rule] = {
    "name": _TEXT,
    "model": (_or_null(_is_file_name), "a file name (a string) or null"),
    "labels": (_or_null(_is_file_name), "a file name in the bundle (a string) or null"),
    "op": (_TEXT[0], "a signature or graph op name (a string) or null"),
    "options": _TEXTS,
    **dict.fromkeys(
        (
            "input_name",
            "output_name",
            "input_node",
            "output_node",
            "inputName",
            "outputName",
            "inputNode",
            "outputNode",
            "description",
            "timestamp",
        ),
        _TEXT,
    ),
    "img_channels": (_or_null(_is_int), "an integer or null"),
    "imgChannels": (_or_null(_is_int), "an integer or null"),
    "features": _TEXTS,
    "normalize": _NORMALIZE,
    "spec": _SPEC_OBJECT,
}

# a FeatureSpec as FeatureSpec.to_dict writes it, with what Trainer.export adds
_SPEC: dict[str, _Rule] = {
    "version": (_is_int, "an integer"),
    "tree": (_is_text, "a string"),
    "cut": _TEXT,
    "n_events": (_is_int, "an integer"),
    "files": (_is_texts, "a list of strings"),
    "skipped": (_is_text_map, "an object of strings"),
    "fingerprint": _TEXT,
    "features": (_is_texts, "a list of strings"),
    "branches": (
        lambda value: isinstance(value, list) and all(isinstance(b, dict) for b in value),
        "a list of branch objects",
    ),
    "normalize": _NORMALIZE,
    "serving_mask": (_is_text_map, "an object of branch -> mask rule strings"),
}

_BRANCH: dict[str, _Rule] = {
    "name": (_is_text, "a string"),
    "dtype": (_is_text, "a string"),
    "jagged": (lambda value: type(value) is bool, "true or false"),
    "pad": (lambda value: _is_int(value) and value >= 0, "an integer >= 0"),
    "max_multiplicity": (_is_int, "an integer"),
    "count": (_is_int, "an integer"),
    "nonfinite": (_is_int, "an integer"),
    **dict.fromkeys(("min", "max", "mean", "std"), (_or_null(_is_number), "a number or null")),
    "fixed": (_or_null(lambda value: _is_int(value) and value >= 0), "an integer >= 0 or null"),
}


def _key(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_rules(data: dict, rules: dict[str, _Rule], path: str) -> None:
    for key, (test, what) in rules.items():
        if key in data and not test(data[key]):
            value = data[key]
            msg = f"{_key(path, key)!r} must be {what}, not {type(value).__name__} {_show(value)}"
            raise ParamsError(msg)


def _check_value(value: object, path: str, depth: int) -> None:
    """Refuse what orjson or another JSON reader cannot take back (see the module's doc)."""
    if depth > MAX_DEPTH:
        msg = f"{path!r} nests more than {MAX_DEPTH} levels deep"
        raise ParamsError(msg)
    if isinstance(value, dict):
        for key, item in value.items():
            where = _key(path, key)
            _check_value(key, f"{where} (its name)", depth)
            _check_value(item, where, depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_value(item, f"{path}[{i}]", depth + 1)
    elif isinstance(value, str):
        if not value.isascii():
            try:
                value.encode()
            except UnicodeEncodeError:
                msg = f"{path!r} holds a lone UTF-16 surrogate, which is not valid UTF-8"
                raise ParamsError(msg) from None
    elif type(value) is int and not _INT_MIN <= value <= _INT_MAX:
        msg = (
            f"{path!r} holds the integer {_show(value)}, beyond the 64-bit range that "
            "JSON readers (orjson, Go) take; write it as a string"
        )
        raise ParamsError(msg)
    elif type(value) is float and not math.isfinite(value):
        msg = f"{path!r} holds {value}, which is not JSON; write null or a string"
        raise ParamsError(msg)


def check_params(params: object) -> dict:
    """Return ``params`` if it follows the schema, else raise `ParamsError` naming the key.

    Parameters
    ----------
    params : the content of ``params.json`` as ``json.loads`` gives it.
    """
    if not isinstance(params, dict):
        msg = f"it must hold a JSON object, not {type(params).__name__}"
        raise ParamsError(msg)
    _check_value(params, "", 0)
    _check_rules(params, _PARAMS, "")
    spec = params.get("spec")
    if spec is not None:
        _check_rules(spec, _SPEC, "spec")
        for i, branch in enumerate(spec.get("branches", ())):
            _check_rules(branch, _BRANCH, f"spec.branches[{i}]")
    return params
