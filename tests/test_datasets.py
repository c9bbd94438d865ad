"""The synthetic ttH dataset: NanoAOD-like content, signal harder than background, formats agree."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import uproot

import mlaas4hep_nb as mn

EXPECTED = {
    "run",
    "event",
    "luminosityBlock",
    "nJet",
    "Jet_pt",
    "Jet_eta",
    "Jet_phi",
    "Jet_mass",
    "Jet_btagDeepB",
    "nElectron",
    "Electron_pt",
    "nMuon",
    "Muon_pt",
    "MET_pt",
    "MET_phi",
}


def test_make_tth_writes_labelled_files(tth):
    assert sorted(tth) == [0, 1]
    assert len(tth[1]) == len(tth[0]) == 2
    with uproot.open(tth[1][0]) as file:
        tree = file["Events"]
        assert set(tree.keys()) >= EXPECTED
        assert tree.num_entries == 1500
        arrays = tree.arrays(["nJet", "Jet_pt"])
        assert ak.all(ak.num(arrays.Jet_pt) == arrays.nJet)


def test_signal_has_more_jets_and_btags(tth):
    def means(paths):
        arrays = uproot.concatenate([f"{p}:Events" for p in paths], ["nJet", "Jet_btagDeepB"])
        btags = ak.sum(arrays.Jet_btagDeepB > 0.5, axis=1)
        return float(ak.mean(arrays.nJet)), float(ak.mean(btags))

    signal_jets, signal_btags = means(tth[1])
    background_jets, background_btags = means(tth[0])
    assert signal_jets > background_jets + 0.5
    assert signal_btags > background_btags + 0.8


def test_same_seed_same_events_other_seed_other_events(tmp_path):
    one = mn.datasets.make_tth(tmp_path / "a", 200, 200, seed=3)
    two = mn.datasets.make_tth(tmp_path / "b", 200, 200, seed=3)
    three = mn.datasets.make_tth(tmp_path / "c", 200, 200, seed=4)
    read = [uproot.open(f[1][0])["Events"]["MET_pt"].array(library="np") for f in (one, two, three)]
    np.testing.assert_array_equal(read[0], read[1])
    assert not np.array_equal(read[0], read[2])


def test_rntuple_holds_the_same_content(tth, tth_rntuple):
    names = ["nJet", "Jet_pt", "Jet_btagDeepB", "Muon_charge", "MET_pt", "event"]
    for ttree_path, rntuple_path in zip(
        tth[1] + tth[0], tth_rntuple[1] + tth_rntuple[0], strict=True
    ):
        ttree = uproot.open(ttree_path)["Events"]
        rntuple = uproot.open(rntuple_path)["Events"]
        assert mn.list_trees(rntuple_path)[0].kind == "RNTuple"
        for name in names:
            assert ak.array_equal(ttree[name].array(), rntuple[name].array()), name


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="fmt"):
        mn.datasets.make_tth(tmp_path, 10, 10, fmt="CSV")
    with pytest.raises(ValueError, match="at least 1"):
        mn.datasets.make_tth(tmp_path, 0, 10)
