"""uproot expressions for cuts and aliases, evaluated alike on TTrees and RNTuples.

uproot applies ``cut=`` and ``aliases=`` only to TTrees; here the same
expression language (uproot's ``PythonLanguage``) is evaluated on columns
already read, so both kinds behave the same, the surviving entry numbers
stay known, and aliases may differ per label (samples with other schemas).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import awkward as ak
import numpy as np
import uproot

from .._compat.uproot import compile_expression
from ..errors import SchemaError
from .rootio import Tree, read_columns

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["cut_symbols", "evaluate", "evaluate_cut", "read_with_aliases", "symbols"]


def __dir__() -> list[str]:
    return __all__


def _per_event(reducer: Callable[..., Any]) -> Callable[[Any], Any]:
    return lambda values: reducer(values, axis=-1)


# uproot's functions plus per-event reductions of jagged values: sum(Jet_btagDeepB > 0.5) >= 2
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    **uproot.language.python.PythonLanguage().functions,
    "any": _per_event(ak.any),
    "all": _per_event(ak.all),
    "sum": _per_event(ak.sum),
    "count": _per_event(ak.count),
    "max": _per_event(ak.max),
    "min": _per_event(ak.min),
}
_LANGUAGE = uproot.language.python.PythonLanguage(functions=_FUNCTIONS)
# CPython 3.11's parser is not thread-safe ("AST constructor recursion depth mismatch" when
# files are scanned in parallel): expressions are parsed one at a time
_PARSING = threading.Lock()


def symbols(expression: str, available: Sequence[str], where: str) -> list[str]:
    """The column names that ``expression`` reads; unknown names raise `SchemaError`."""
    try:
        with _PARSING:
            found = _LANGUAGE.free_symbols(expression, set(available), {}, where, "")
    except uproot.KeyInFileError as err:
        msg = f"{expression!r} names {err.key!r}, which is not a branch of {where}"
        raise SchemaError(msg) from err
    except SyntaxError as err:
        msg = f"{expression!r} is not a valid expression: {err.msg.splitlines()[0]}"
        raise SchemaError(msg) from err
    return list(dict.fromkeys(found))


def cut_symbols(cut: str, available: Sequence[str], where: str) -> list[str]:
    """The column names a cut reads (see `symbols`)."""
    return symbols(cut, available, where)


def evaluate(expression: str, arrays: Mapping[str, ak.Array], where: str) -> ak.Array:
    """The value of ``expression`` per event, from columns already read."""
    scope = {"get": arrays.__getitem__, "function": _LANGUAGE.functions}
    try:
        with _PARSING:
            function = compile_expression(
                expression, set(arrays), _LANGUAGE.functions, scope, where
            )
        result = function()
    except Exception as err:
        msg = f"{expression!r} failed on {where}: {type(err).__name__}: {err}"
        raise SchemaError(msg) from err
    return result if isinstance(result, ak.Array) else ak.Array(np.asarray(result))


def evaluate_cut(cut: str, arrays: Mapping[str, ak.Array], where: str) -> NDArray[np.bool_]:
    """One boolean per event: the events that pass ``cut``."""
    result = evaluate(cut, arrays, where)
    if result.ndim != 1 or str(result.type.content) != "bool":
        msg = (
            f"cut {cut!r} must give one boolean per event, got {result.type} on {where}; "
            "reduce jagged conditions per event with any(), all(), sum() or count()"
        )
        raise SchemaError(msg)
    return cast("NDArray[np.bool_]", ak.to_numpy(result))


def read_with_aliases(
    tree: Tree, names: Sequence[str], start: int, stop: int, aliases: Mapping[str, str], where: str
) -> dict[str, ak.Array]:
    """Read columns ``names``: branches as they are, aliases computed from the branches they use."""
    computed = [name for name in names if name in aliases]
    if not computed:
        return read_columns(tree, list(names), start, stop)
    available = list(tree.keys(recursive=True, full_paths=True))
    needed = [name for name in names if name not in aliases]
    for name in computed:
        needed.extend(symbols(aliases[name], available, where))
    arrays = read_columns(tree, list(dict.fromkeys(needed)), start, stop)
    for name in computed:
        arrays[name] = evaluate(aliases[name], arrays, f"{where} (alias {name!r})")
    return {name: arrays[name] for name in names}
