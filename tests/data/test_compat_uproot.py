"""Private third-party hooks: loud when an upgrade changes them, and a fallback that works."""

from __future__ import annotations

import inspect

import awkward as ak
import numpy as np

from mlaas4hep_nb._compat import uproot as compat_uproot
from mlaas4hep_nb.data.expressions import evaluate, evaluate_cut


def test_uproot_expression_hook_is_there_as_used():
    from uproot.language import python

    found = getattr(python, "_expression_to_function", None)
    assert found is not None, f"{compat_uproot.HOOK} is gone: the fallback (eval) is in use"
    parameters = tuple(inspect.signature(found).parameters)
    assert parameters == compat_uproot.HOOK_PARAMETERS, (
        f"{compat_uproot.HOOK} changed its parameters to {parameters}; "
        f"mlaas4hep_nb/_compat/uproot.py calls it with {compat_uproot.HOOK_PARAMETERS}"
    )
    assert compat_uproot.hook() is found


def test_uproot_fallback_gives_the_hooks_answers(monkeypatch):
    arrays = {
        "nMuon": ak.Array([0, 2, 3, 2]),
        "Muon_pt": ak.Array([[], [30.0, 10.0], [5.0, 4.0, 3.0], [25.0, 21.0]]),
    }
    cut = "(nMuon >= 2) & (sum(Muon_pt > 20) >= 1)"
    alias = "nMuon * 2 + 1"
    with_hook = evaluate_cut(cut, arrays, "t"), evaluate(alias, arrays, "t")
    monkeypatch.setattr(compat_uproot, "_HOOK", None)
    fallback = evaluate_cut(cut, arrays, "t"), evaluate(alias, arrays, "t")
    np.testing.assert_array_equal(with_hook[0], [False, True, False, True])
    np.testing.assert_array_equal(fallback[0], with_hook[0])
    assert fallback[1].tolist() == with_hook[1].tolist() == [1, 5, 7, 5]
