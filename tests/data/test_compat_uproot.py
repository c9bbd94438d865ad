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


def test_zlib_baskets_are_read_with_isal_and_written_as_before(tmp_path, monkeypatch):
    import isal.isal_zlib
    import uproot
    import uproot.compression

    from mlaas4hep_nb._compat.uproot_zlib import HOOK, decompress_zlib_with_isal

    assert decompress_zlib_with_isal(), f"{HOOK} is gone or changed: zlib baskets use zlib"
    assert uproot.compression._decompress_ZLIB.library == "isal"
    assert uproot.ZLIB.library == "zlib", "writing must keep uproot's zlib and its levels"

    rng = np.random.default_rng(3)
    values = np.round(rng.normal(size=50_000), 3).astype(np.float32)
    jagged = ak.unflatten(rng.normal(size=150_000).astype(np.float32), [0, 3, 2, 7] * 12_500)
    path = tmp_path / "zlib.root"
    with uproot.recreate(path, compression=uproot.ZLIB(4)) as file:
        file.mktree("t", {"a": np.float32, "Jet_pt": "var * float32"})
        file["t"].extend({"a": values, "Jet_pt": jagged})
    calls = []
    decompress = isal.isal_zlib.decompress

    def counted(*args, **kwargs):
        calls.append(1)
        return decompress(*args, **kwargs)

    monkeypatch.setattr(isal.isal_zlib, "decompress", counted)
    with uproot.open(path) as file:
        assert file.file.compression == uproot.ZLIB(4)
        basket = file["t"]["a"].basket(0)
        assert basket.compressed_bytes < basket.uncompressed_bytes
        read = file["t"].arrays(["a", "Jet_pt"])
    assert calls, "uproot did not decompress with ISA-L"
    np.testing.assert_array_equal(read["a"].to_numpy(), values)
    assert ak.all(read["Jet_pt"] == jagged)
