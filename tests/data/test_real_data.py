"""The real CMS open-data files in ../shared/data: browse, specs, stream, HZZ vs Zmumu."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import uproot

import mlaas4hep_nb as mn
from mlaas4hep_nb.data.stream import NonFiniteWarning
from mlaas4hep_nb.errors import SchemaError

# HZZ and Zmumu share no branch names: per-label aliases map both onto the same features
MUON_FEATURES = {
    1: {
        "mu_pt": "max(sqrt(Muon_Px**2 + Muon_Py**2))",
        "mu_charge": "sum(Muon_Charge)",
        "n_mu": "NMuon",
    },
    0: {"mu_pt": "fmax(pt1, pt2)", "mu_charge": "Q1 + Q2", "n_mu": "2 + 0 * Q1"},
}


def test_browse_real_files(shared_data):
    trees = mn.list_trees(str(shared_data / "*.root"))
    assert {(t.name, t.entries) for t in trees} == {("events", 2421 + 2304), ("tree", 501)}
    hzz = {b.name: b for b in mn.branches(str(shared_data / "uproot-HZZ.root"), "events")}
    assert hzz["Jet_Px"].jagged
    assert hzz["Jet_ID"].dtype == "bool"
    zmumu = {b.name: b for b in mn.branches(str(shared_data / "uproot-Zmumu.root"), "events")}
    assert not zmumu["Type"].supported
    assert "strings" in zmumu["Type"].reason
    dy = {
        b.name: b
        for b in mn.branches(str(shared_data / "uproot-small-dy-withoffsets.root"), "tree")
    }
    assert dy["nJet"].dtype == "uint32"


def test_specs_of_real_jagged_branches(shared_data):
    path = str(shared_data / "uproot-HZZ.root")
    spec = mn.compute_specs(
        path, tree="events", branches=["NJet", "Jet_*", "MET_px"], cache=False, progress=False
    )
    jets = uproot.open(path)["events"].arrays(["NJet", "Jet_Px"])
    assert spec.branch("Jet_Px").pad == int(ak.max(jets.NJet))
    assert spec.branch("Jet_ID").dtype == "bool"
    assert spec.branch("Jet_Px").mean == pytest.approx(
        float(ak.mean(ak.flatten(jets.Jet_Px))), rel=1e-6
    )


def test_zmumu_default_selection_skips_the_string_branch(shared_data):
    spec = mn.compute_specs(
        str(shared_data / "uproot-Zmumu.root"), tree="events", cache=False, progress=False
    )
    assert "Type" not in [b.name for b in spec.branches]
    assert "strings" in spec.skipped["Type"]
    with pytest.raises(SchemaError, match="'Type'.*unsupported"):
        mn.compute_specs(
            str(shared_data / "uproot-Zmumu.root"), tree="events", branches=["Type"], cache=False
        )


def test_hzz_versus_zmumu_without_aliases_names_the_missing_branch(shared_data):
    sources = {1: str(shared_data / "uproot-HZZ.root"), 0: str(shared_data / "uproot-Zmumu.root")}
    with pytest.raises(SchemaError, match=r"'NMuon' missing in .*HZZ|'NMuon' missing in .*Zmumu"):
        mn.DataStream(sources, tree="events", branches=["NMuon"], progress=False)


def test_hzz_versus_zmumu_as_signal_and_background(shared_data):
    hzz, zmumu = shared_data / "uproot-HZZ.root", shared_data / "uproot-Zmumu.root"
    with pytest.warns(NonFiniteWarning, match="mu_pt"):
        stream = mn.DataStream(
            {1: str(hzz), 0: str(zmumu)},
            tree="events",
            aliases=MUON_FEATURES,
            branches=["mu_pt", "mu_charge", "n_mu"],
            normalize=None,
            shuffle=False,
            progress=False,
        )
        parts = list(stream.chunks())
    x = np.concatenate([p[0] for p in parts])
    mask = np.concatenate([p[1] for p in parts])
    y = np.concatenate([p[2] for p in parts])
    assert stream.features == ["mu_pt", "mu_charge", "n_mu"]
    assert (y == 1).sum() == 2421
    assert (y == 0).sum() == 2304
    z = uproot.open(zmumu)["events"].arrays(["pt1", "pt2", "Q1", "Q2"], library="np")
    np.testing.assert_allclose(
        np.sort(x[y == 0, 0]), np.sort(np.fmax(z["pt1"], z["pt2"])), rtol=1e-6
    )
    np.testing.assert_array_equal(np.sort(x[y == 0, 1]), np.sort(z["Q1"] + z["Q2"]))
    no_muon = uproot.open(hzz)["events"]["NMuon"].array(library="np") == 0
    assert (~mask[y == 1, 0]).sum() == no_muon.sum()
    assert stream.report["nonfinite"] == {f"mu_pt ({hzz})": int(no_muon.sum())}


def test_dy_file_streams_with_a_label_branch_cut(shared_data):
    path = str(shared_data / "uproot-small-dy-withoffsets.root")
    stream = mn.DataStream(
        {0: path, 1: path}, tree="tree", cut="nMuon >= 2", max_len=4, progress=False
    )
    n_pass = int((uproot.open(path)["tree"]["nMuon"].array(library="np") >= 2).sum())
    assert stream.count() == 2 * n_pass
    assert stream.spec.branch("Jet_pt").pad <= 4
    assert sum(len(y) for _, _, y in stream.chunks()) == 2 * n_pass
