"""FeatureSpec and compute_specs: statistics, selection, caps, cuts, JSON and the cache."""

from __future__ import annotations

import os

import awkward as ak
import numpy as np
import pytest
import uproot

import mlaas4hep_nb as mn
from mlaas4hep_nb.data import measure
from mlaas4hep_nb.data.spec import BranchSpec, cache_dir
from mlaas4hep_nb.errors import EmptyDataError, SchemaError, SkippedBranchWarning


def read_all(paths, names, cut=None):
    arrays = uproot.concatenate([f"{p}:Events" for p in paths], names)
    if cut is not None:
        arrays = arrays[cut(arrays)]
    return arrays


def test_statistics_match_numpy(tth):
    files = tth[1] + tth[0]
    spec = mn.compute_specs(
        files, branches=["MET_pt", "Jet_pt", "nJet"], cache=False, progress=False
    )
    arrays = read_all(files, ["MET_pt", "Jet_pt", "nJet"])
    assert [b.name for b in spec.branches] == ["MET_pt", "Jet_pt", "nJet"]
    met = spec.branch("MET_pt")
    values = arrays.MET_pt.to_numpy().astype(np.float64)
    assert not met.jagged
    assert met.pad == 1
    assert met.min == pytest.approx(values.min())
    assert met.max == pytest.approx(values.max())
    assert met.mean == pytest.approx(values.mean(), rel=1e-9)
    assert met.std == pytest.approx(values.std(), rel=1e-9)
    jets = spec.branch("Jet_pt")
    flat = ak.flatten(arrays.Jet_pt).to_numpy().astype(np.float64)
    assert jets.jagged
    assert jets.pad == jets.max_multiplicity == int(ak.max(arrays.nJet))
    assert jets.count == flat.size
    assert jets.mean == pytest.approx(flat.mean(), rel=1e-9)
    assert jets.std == pytest.approx(flat.std(), rel=1e-9)
    assert spec.n_events == 6000
    assert spec.features[:3] == ["MET_pt", "Jet_pt_0", "Jet_pt_1"]
    assert spec.features[-1] == "nJet"
    assert spec.n_features == 1 + jets.pad + 1


def test_max_len_caps_pads_and_statistics(tth):
    files = tth[1]
    spec = mn.compute_specs(
        files,
        branches=["Jet_pt", "Jet_eta", "Muon_pt"],
        max_len={"Jet_pt": 3},
        cache=False,
        progress=False,
    )
    arrays = read_all(files, ["Jet_pt", "Jet_eta"])
    kept = ak.flatten(arrays.Jet_pt[:, :3]).to_numpy().astype(np.float64)
    capped = spec.branch("Jet_pt")
    assert capped.pad == 3
    assert capped.max_multiplicity > 3
    assert capped.count == kept.size
    assert capped.max == pytest.approx(kept.max())
    assert capped.mean == pytest.approx(kept.mean(), rel=1e-9)
    assert spec.branch("Jet_eta").pad == capped.max_multiplicity
    everything = mn.compute_specs(files, branches=["Jet_*"], max_len=2, cache=False, progress=False)
    assert {b.pad for b in everything.branches} == {2}
    assert everything.features[:2] == ["Jet_pt_0", "Jet_pt_1"]


def test_selection_patterns_exclusions_and_order(tth):
    default = mn.compute_specs(tth[1], cache=False, progress=False)
    names = [b.name for b in default.branches]
    assert names[:2] == ["nJet", "Jet_pt"]
    assert not {"run", "event", "luminosityBlock"} & set(names)
    chosen = mn.compute_specs(
        tth[1], branches=["MET_*", "Muon_p*", "event"], cache=False, progress=False
    )
    assert [b.name for b in chosen.branches] == [
        "MET_pt",
        "MET_phi",
        "Muon_pt",
        "Muon_phi",
        "event",
    ]
    excluded = mn.compute_specs(
        tth[1],
        exclude=["run", "event", "luminosityBlock", "Electron_*"],
        cache=False,
        progress=False,
    )
    assert not any(b.name.startswith("Electron_") for b in excluded.branches)


def test_cut_is_applied_before_everything(tth):
    files = tth[0]
    spec = mn.compute_specs(
        files, branches=["MET_pt"], cut="(nJet >= 6) & (MET_pt > 40)", cache=False, progress=False
    )
    arrays = read_all(files, ["MET_pt", "nJet"], cut=lambda a: (a.nJet >= 6) & (a.MET_pt > 40))
    assert spec.n_events == len(arrays)
    assert spec.branch("MET_pt").min > 40
    assert spec.branch("MET_pt").mean == pytest.approx(float(ak.mean(arrays.MET_pt)), rel=1e-6)
    reduced = mn.compute_specs(
        files, branches=["nJet"], cut="sum(Jet_btagDeepB > 0.5) >= 3", cache=False, progress=False
    )
    expected = ak.sum(read_all(files, ["Jet_btagDeepB"]).Jet_btagDeepB > 0.5, axis=1) >= 3
    assert reduced.n_events == int(ak.sum(expected))


def test_rntuple_gives_the_same_spec(tth, tth_rntuple):
    names = ["nJet", "Jet_pt", "Muon_charge", "MET_pt"]
    ttree = mn.compute_specs(tth[1], branches=names, cache=False, progress=False)
    rntuple = mn.compute_specs(tth_rntuple[1], branches=names, cache=False, progress=False)
    assert ttree.to_dict()["branches"] == rntuple.to_dict()["branches"]


def test_json_round_trip(tth, tmp_path):
    spec = mn.compute_specs(tth[1], cut="nJet > 3", max_len=4, progress=False)
    again = mn.FeatureSpec.from_dict(spec.to_dict())
    assert again == spec
    path = spec.save(tmp_path / "spec.json")
    assert mn.FeatureSpec.load(path) == spec
    assert mn.FeatureSpec.load(path).features == spec.features


def test_cache_hits_and_never_reuses_a_spec_of_changed_files(tmp_path):
    files = mn.datasets.make_tth(tmp_path, 300, 300, seed=1)
    first = mn.compute_specs(files, branches=["MET_pt"], progress=False)
    cached = mn.FeatureSpec.load(cache_dir() / f"{first.fingerprint}.json")
    assert cached == first
    assert mn.compute_specs(files, branches=["MET_pt"], progress=False) == first
    other_cut = mn.compute_specs(files, branches=["MET_pt"], cut="MET_pt > 10", progress=False)
    assert other_cut.fingerprint != first.fingerprint
    mn.datasets.make_tth(tmp_path, 300, 300, seed=2)  # rewrites the same paths
    os.utime(files[1][0], ns=(1, 1))
    changed = mn.compute_specs(files, branches=["MET_pt"], progress=False)
    assert changed.fingerprint != first.fingerprint
    assert changed.branch("MET_pt").mean != first.branch("MET_pt").mean


def test_nonfinite_values_are_counted_and_left_out(tmp_path):
    path = tmp_path / "nan.root"
    x = np.array([1.0, np.nan, 3.0, np.inf, -2.0])
    jets = ak.Array([[1.0, np.nan], [], [np.inf], [4.0], [5.0, 6.0, -np.inf]])
    with uproot.recreate(path) as file:
        file.mktree("Events", {"x": np.float64, "j": "var * float64"}).extend({"x": x, "j": jets})
    spec = mn.compute_specs(str(path), cache=False, progress=False)
    assert spec.branch("x").nonfinite == 2
    assert (spec.branch("x").min, spec.branch("x").max) == (-2.0, 3.0)
    assert spec.branch("j").nonfinite == 3
    assert spec.branch("j").count == 4
    assert spec.branch("j").pad == 3


def test_bad_selections_are_explained(tth, tmp_path):
    with pytest.raises(SchemaError, match="branch 'Jet_ptt' missing in .*present in 0 of 2"):
        mn.compute_specs(tth[1], branches=["Jet_ptt"], cache=False, progress=False)
    with pytest.raises(SchemaError, match="no branch .* matches 'Tau_\\*'"):
        mn.compute_specs(tth[1], branches=["Tau_*"], cache=False, progress=False)
    with pytest.raises(EmptyDataError, match="leaves no events"):
        mn.compute_specs(tth[1], cut="nJet > 100", cache=False, progress=False)
    with pytest.raises(SchemaError, match="names 'nJt'"):
        mn.compute_specs(tth[1], cut="nJt > 1", cache=False, progress=False)
    with pytest.raises(ValueError, match="not selected"):
        mn.compute_specs(tth[1], branches=["MET_pt"], max_len={"Jet_pt": 2}, cache=False)
    with pytest.raises(EmptyDataError, match="leaves no branch"):
        mn.compute_specs(tth[1], branches=None, exclude=["*"], cache=False)


def test_branch_missing_in_one_file_or_typed_differently(tth, tmp_path):
    other = tmp_path / "other.root"
    with uproot.recreate(other) as file:
        file.mktree("Events", {"MET_pt": np.float64, "nJet": np.float32}).extend(
            {"MET_pt": np.full(3, 1e4), "nJet": np.ones(3, np.float32)}
        )
    with pytest.raises(SchemaError, match=r"'Jet_pt' missing in .*other.root.*present in 2 of 3"):
        mn.compute_specs([*tth[1], str(other)], branches=["Jet_pt"], cache=False)
    # float and double become the same float32 feature
    spec = mn.compute_specs([*tth[1], str(other)], branches=["MET_pt"], cache=False)
    assert spec.branch("MET_pt").max == 1e4
    with pytest.raises(SchemaError, match=r"'nJet' has type float in .*other.root but int32_t"):
        mn.compute_specs([*tth[1], str(other)], branches=["nJet"], cache=False)


def test_empty_tree_is_an_error(tmp_path):
    path = tmp_path / "empty.root"
    with uproot.recreate(path) as file:
        file.mktree("Events", {"x": np.float64})
    with pytest.raises(EmptyDataError, match="leaves no events"):
        mn.compute_specs(str(path), cache=False)


def test_aliases_compute_features(tth):
    spec = mn.compute_specs(
        tth[1],
        branches=["ht", "n_b"],
        aliases={"ht": "sum(Jet_pt)", "n_b": "count(Jet_btagDeepB > 0.5)"},
        cache=False,
        progress=False,
    )
    arrays = read_all(tth[1], ["Jet_pt", "Jet_btagDeepB"])
    ht = ak.to_numpy(ak.sum(arrays.Jet_pt, axis=1)).astype(np.float64)
    assert spec.branch("ht").mean == pytest.approx(ht.mean(), rel=1e-6)
    assert not spec.branch("ht").jagged
    assert spec.branch("n_b").max == pytest.approx(
        float(ak.max(ak.count(arrays.Jet_btagDeepB > 0.5, axis=1)))
    )


def test_bad_aliases_are_explained(tth):
    with pytest.raises(SchemaError, match="'Jet_ptt'"):
        mn.compute_specs(tth[1], aliases={"ht": "sum(Jet_ptt)"}, branches=["ht"], cache=False)
    with pytest.raises(ValueError, match="need {label: files}"):
        mn.compute_specs(tth[1], aliases={1: {"ht": "sum(Jet_pt)"}}, cache=False)
    with pytest.raises(ValueError, match="same names for every label"):
        mn.compute_specs(tth, aliases={1: {"ht": "sum(Jet_pt)"}, 0: {"x": "MET_pt"}}, cache=False)


def test_on_progress_reports_entries_read(tth):
    calls = []
    mn.compute_specs(
        tth,
        branches=["MET_pt"],
        cache=False,
        progress=False,
        on_progress=lambda done, total: calls.append((done, total)),
    )
    assert calls[-1] == (6000, 6000)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


# --- constant branches (2015 CMS data: Jet_btagDeepB is always -1) ---------------------


@pytest.fixture(scope="module")
def constants(tmp_path_factory) -> list[str]:
    """Two files where the jagged Jet_btagDeepB is always -1 and the flat MET_covXX -3000."""
    folder = tmp_path_factory.mktemp("constants")
    rng = np.random.default_rng(7)
    paths = []
    for i in range(2):
        counts = rng.integers(0, 4, 40)
        branches = {
            "MET_pt": rng.exponential(40.0, 40),
            "MET_covXX": np.full(40, -3000.0, np.float32),
            "Jet_pt": ak.unflatten(rng.exponential(50.0, counts.sum()), counts),
            "Jet_btagDeepB": ak.unflatten(np.full(counts.sum(), -1.0, np.float32), counts),
        }
        types = {
            "MET_pt": np.float64,
            "MET_covXX": np.float32,
            "Jet_pt": "var * float64",
            "Jet_btagDeepB": "var * float32",
        }
        path = folder / f"constants_{i}.root"
        with uproot.recreate(path) as file:
            file.mktree("Events", types, counter_name=lambda _: "nJet").extend(branches)
        paths.append(str(path))
    return paths


CONSTANT_REASONS = {
    "MET_covXX": "constant: every value is -3000",
    "Jet_btagDeepB": "constant: every value is -1",
}


def test_default_selection_leaves_constant_branches_out_with_one_warning(constants):
    with pytest.warns(SkippedBranchWarning, match=r"left out 2 constant branch\(es\)") as caught:
        spec = mn.compute_specs(constants, cache=False, progress=False)
    assert len(caught) == 1
    assert caught[0].filename == __file__
    message = str(caught[0].message)
    assert "MET_covXX (constant: every value is -3000)" in message
    assert "Jet_btagDeepB (constant: every value is -1)" in message
    assert [b.name for b in spec.branches] == ["MET_pt", "nJet", "Jet_pt"]
    assert spec.skipped == CONSTANT_REASONS
    assert "skipped Jet_btagDeepB: constant: every value is -1" in spec.summary()
    assert spec.n_features == 2 + spec.branch("Jet_pt").pad


def test_a_glob_leaves_constant_branches_out_a_name_keeps_them(constants):
    with pytest.warns(SkippedBranchWarning) as caught:
        spec = mn.compute_specs(constants, branches=["MET_*", "Jet_*"], cache=False)
    assert len(caught) == 1
    assert [b.name for b in spec.branches] == ["MET_pt", "Jet_pt"]
    assert spec.skipped == CONSTANT_REASONS
    # named exactly, even beside a glob that matches it: kept, and flagged in the summary
    spec = mn.compute_specs(
        constants, branches=["MET_pt", "MET_covXX", "Jet_*", "Jet_btagDeepB"], cache=False
    )
    assert [b.name for b in spec.branches] == ["MET_pt", "MET_covXX", "Jet_pt", "Jet_btagDeepB"]
    assert spec.skipped == {}
    assert spec.branch("MET_covXX").constant
    assert spec.branch("Jet_btagDeepB").constant
    assert not spec.branch("MET_pt").constant
    rows = {line.split()[0]: line for line in spec.summary().splitlines()[2:-1]}
    assert rows["MET_covXX"].endswith("  constant")
    assert rows["Jet_btagDeepB"].endswith("  constant")
    assert not rows["MET_pt"].endswith("constant")


def test_only_constant_branches_is_an_error_naming_them(constants):
    with pytest.raises(EmptyDataError, match=r"every selected branch .* is constant: MET_covXX"):
        mn.compute_specs(constants, branches=["MET_cov*"], cache=False)
    with pytest.raises(EmptyDataError, match=r"Jet_btagDeepB \(constant: every value is -1\)"):
        mn.compute_specs(constants, branches=["*_cov*", "Jet_btag*"], cache=False)


def test_the_cache_warns_again_and_never_serves_constants(constants):
    for _ in range(2):  # computed, then read from the cache
        with pytest.warns(SkippedBranchWarning, match="constant"):
            spec = mn.compute_specs(constants, progress=False)
        assert spec.skipped == CONSTANT_REASONS


def test_specs_cached_under_the_old_rules_are_not_reused(constants, monkeypatch):
    everything = ["MET_pt", "MET_covXX", "nJet", "Jet_pt", "Jet_btagDeepB"]
    with_constants = mn.compute_specs(constants, branches=everything, cache=False)
    with monkeypatch.context() as old_rules:
        old_rules.setattr(measure, "_SPEC_RULES", 2)
        with pytest.warns(SkippedBranchWarning):
            old_key = mn.compute_specs(constants, max_len=2, progress=False).fingerprint
        # what the rules before constants were left out cached for this selection
        with_constants.save(cache_dir() / f"{old_key}.json")
        stale = mn.compute_specs(constants, max_len=2, progress=False)
        assert "MET_covXX" in [b.name for b in stale.branches]  # served from the cache
    with pytest.warns(SkippedBranchWarning):
        spec = mn.compute_specs(constants, max_len=2, progress=False)
    assert spec.fingerprint != old_key
    assert spec.skipped == CONSTANT_REASONS


def test_a_stream_leaves_constant_branches_out_of_its_features(constants):
    with pytest.warns(SkippedBranchWarning) as caught:
        stream = mn.DataStream({1: constants[:1], 0: constants[1:]}, progress=False)
        x, _, y = next(iter(stream.chunks()))
    assert len(caught) == 1
    assert not any(name.startswith(("MET_covXX", "Jet_btagDeepB")) for name in stream.features)
    assert stream.features[:2] == ["MET_pt", "nJet"]
    assert x.shape[1] == stream.n_features == len(stream.features)
    assert len(y) == len(x) > 0


def test_branch_spec_constant():
    def branch(low, high):
        return BranchSpec("x", "float64", False, 1, 1, 3, 0, low, high, low, 0.0)

    assert branch(-1.0, -1.0).constant
    assert branch(None, None).constant  # no finite value at all
    assert not branch(0.0, 1.0).constant
