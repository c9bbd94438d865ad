"""Event selections written as uproot cut expressions, for TTrees and RNTuples alike.

uproot applies ``cut=`` only to TTrees; here the same expression language
(uproot's ``PythonLanguage``) is evaluated on columns already read, so both
kinds behave the same and the surviving entry numbers stay known.
"""

from __future__ import annotations

from collections.abc import Mapping

import awkward as ak
import numpy as np
import uproot
from uproot.language.python import _expression_to_function

from .errors import SchemaError

__all__ = ["cut_symbols", "evaluate_cut"]


def _per_event(reducer):
    return lambda values: reducer(values, axis=-1)


# uproot's functions plus per-event reductions of jagged conditions: sum(Jet_btagDeepB > 0.5) >= 2
_FUNCTIONS = {
    **uproot.language.python.PythonLanguage().functions,
    "any": _per_event(ak.any),
    "all": _per_event(ak.all),
    "sum": _per_event(ak.sum),
    "count": _per_event(ak.count),
    "max": _per_event(ak.max),
    "min": _per_event(ak.min),
}
_LANGUAGE = uproot.language.python.PythonLanguage(functions=_FUNCTIONS)


def __dir__() -> list[str]:
    return __all__


def cut_symbols(cut: str, available: list[str], where: str) -> list[str]:
    """The column names that ``cut`` reads; unknown names raise `SchemaError`."""
    try:
        return list(dict.fromkeys(_LANGUAGE.free_symbols(cut, set(available), {}, where, "")))
    except uproot.KeyInFileError as err:
        msg = f"cut {cut!r} names {err.key!r}, which is not a branch of {where}"
        raise SchemaError(msg) from err
    except SyntaxError as err:
        msg = f"cut {cut!r} is not a valid expression: {err.msg.splitlines()[0]}"
        raise SchemaError(msg) from err


def evaluate_cut(cut: str, arrays: Mapping[str, ak.Array], where: str) -> np.ndarray:
    """One boolean per event: the events that pass ``cut``."""
    scope = {"get": arrays.__getitem__, "function": _LANGUAGE.functions}
    try:
        function = _expression_to_function(
            cut, set(arrays), {}, _LANGUAGE.functions, "get", scope, where, ""
        )
        result = function()
    except Exception as err:
        msg = f"cut {cut!r} failed on {where}: {type(err).__name__}: {err}"
        raise SchemaError(msg) from err
    result = ak.Array(result) if not isinstance(result, ak.Array) else result
    if result.ndim != 1 or str(result.type.content) != "bool":
        msg = (
            f"cut {cut!r} must give one boolean per event, got {result.type} on {where}; "
            "reduce jagged conditions per event with any(), all(), sum() or count()"
        )
        raise SchemaError(msg)
    return ak.to_numpy(result)
