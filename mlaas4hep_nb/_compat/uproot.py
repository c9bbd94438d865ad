"""uproot's private expression compiler, with Python's own ``eval`` as the fallback.

uproot applies ``cut=``/``aliases=`` only to TTrees and only while reading;
`compile_expression` compiles the same expression language for columns
already read (RNTuples too). The fallback evaluates plain Python over the
columns whose names are identifiers: enough for cuts such as
``(nMuon >= 2) & (sum(Muon_pt > 20) >= 1)``, not for uproot's extras.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["HOOK", "HOOK_PARAMETERS", "compile_expression", "hook"]

log = logging.getLogger(__name__)

HOOK = "uproot.language.python._expression_to_function"
HOOK_PARAMETERS = (
    "expression", "keys", "aliases", "functions", "getter", "scope", "file_path", "object_path",
)  # fmt: skip


def __dir__() -> list[str]:
    return __all__


def hook() -> Callable[..., Any] | None:
    """uproot's private function if it is there with the parameters used here; else None."""
    try:
        from uproot.language import python
    except ImportError:
        return None
    function = getattr(python, "_expression_to_function", None)
    if function is None:
        return None
    try:
        parameters = tuple(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return None
    return function if parameters == HOOK_PARAMETERS else None


_HOOK = hook()
if _HOOK is None:
    log.warning("%s is missing or changed: cuts and aliases use Python's eval instead", HOOK)


def compile_expression(
    expression: str,
    names: set[str],
    functions: Mapping[str, Any],
    scope: dict[str, Any],
    where: str,
) -> Callable[[], Any]:
    """A function of no arguments computing ``expression`` from ``scope["get"](name)``."""
    if _HOOK is not None:
        return _HOOK(expression, names, {}, functions, "get", scope, where, "")
    code = compile(expression, where, "eval")
    get = scope["get"]

    def run() -> Any:
        columns = {name: get(name) for name in names if name.isidentifier()}
        return eval(code, {"__builtins__": {}}, {**functions, **columns})

    return run
