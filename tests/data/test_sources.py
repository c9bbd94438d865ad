"""Browsing: trees in nested directories, branches with unsupported types flagged, previews."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

import mlaas4hep_nb as mn
from mlaas4hep_nb.errors import SchemaError, SourceError


@pytest.fixture(scope="module")
def odd_file(tmp_path_factory) -> str:
    """Trees in nested TDirectories, an RNTuple, strings and nested vectors."""
    path = tmp_path_factory.mktemp("odd") / "odd.root"
    with uproot.recreate(path) as file:
        file.mktree("top", {"x": np.float64}).extend({"x": np.arange(5.0)})
        file.mktree("a/b/deep", {"y": np.int32}).extend({"y": np.arange(3, dtype=np.int32)})
        file["a/ntuple"] = {
            "z": np.arange(4.0),
            "J": ak.zip({"pt": ak.Array([[1.0], [], [2.0, 3.0], []])}),
            "nested": ak.Array([[[1.0], []], [], [[2.0, 3.0]], []]),
            "label": ak.Array(["a", "bb", "c", "d"]),
        }
    return str(path)


def test_list_trees_walks_nested_directories(odd_file):
    trees = {t.name: t for t in mn.list_trees(odd_file)}
    assert set(trees) == {"top", "a/b/deep", "a/ntuple"}
    assert trees["top"] == mn.TreeInfo("top", "TTree", 5, 1)
    assert trees["a/b/deep"].entries == 3
    assert trees["a/ntuple"].kind == "RNTuple"
    assert trees["a/ntuple"].entries == 4


def test_list_trees_sums_over_a_glob_and_a_list(tth):
    glob = tth[1][0].rsplit("_", 1)[0] + "_*.root"
    assert mn.list_trees(glob) == [mn.TreeInfo("Events", "TTree", 3000, 2)]
    assert mn.list_trees(tth[1] + tth[0]) == [mn.TreeInfo("Events", "TTree", 6000, 4)]


def test_branches_flags_unsupported_types_without_hiding_them(odd_file):
    deep = {b.name: b for b in mn.branches(odd_file, "a/b/deep")}
    assert deep["y"].supported
    assert not deep["y"].jagged
    ntuple = {b.name: b for b in mn.branches(odd_file, "a/ntuple")}
    assert not ntuple["nested"].supported
    assert "nested" in ntuple["nested"].reason
    assert not ntuple["label"].supported
    assert "strings" in ntuple["label"].reason
    assert ntuple["J.pt"].jagged
    assert ntuple["J.pt"].supported
    assert ntuple["z"].dtype == "float64"


def test_branches_of_a_nanoaod_like_tree(tth):
    infos = {b.name: b for b in mn.branches(tth[1][0])}
    assert infos["Jet_pt"].jagged
    assert infos["Jet_pt"].dtype == "float32"
    assert not infos["MET_pt"].jagged
    assert infos["Muon_charge"].dtype == "int32"
    assert all(b.supported for b in infos.values())


def test_preview_matches_numpy(tth):
    histogram = mn.preview(tth[1][0], "Events", "Jet_pt", bins=20)
    values = ak.flatten(uproot.open(tth[1][0])["Events"]["Jet_pt"].array()).to_numpy()
    expected, _ = np.histogram(values, bins=histogram.axes[0].edges)
    np.testing.assert_array_equal(histogram.values(), expected)
    assert histogram.sum() == values.size


def test_preview_reads_only_entry_stop_entries_across_files(tth):
    counts = mn.preview(tth[1], "Events", "nJet", entry_stop=2000)
    assert counts.sum() == 2000
    assert isinstance(counts.axes[0], mn.preview.__globals__["hist"].axis.Integer)


def test_preview_rejects_missing_and_unsupported_branches(tth, odd_file):
    with pytest.raises(SchemaError, match="Jet_ptt"):
        mn.preview(tth[1][0], "Events", "Jet_ptt")
    with pytest.raises(SchemaError, match="nested"):
        mn.preview(odd_file, "a/ntuple", "nested")


def test_unknown_tree_lists_the_trees_there(tth):
    with pytest.raises(SchemaError, match=r"no tree 'events'.*Events"):
        mn.branches(tth[1][0], "events")


def test_bad_files_are_named(tmp_path, tth):
    missing = tmp_path / "missing.root"
    with pytest.raises(SourceError, match="missing.root"):
        mn.list_trees(str(missing))
    text = tmp_path / "text.root"
    text.write_text("not a ROOT file at all")
    with pytest.raises(SourceError, match=r"text.root is not a ROOT file"):
        mn.list_trees(str(text))
    truncated = tmp_path / "truncated.root"
    truncated.write_bytes(Path(tth[1][0]).read_bytes()[:20_000])
    with pytest.raises(SourceError, match=r"truncated.root is truncated"):
        mn.list_trees(str(truncated))
    with pytest.raises(SourceError, match="no file matches"):
        mn.list_trees(str(tmp_path / "nothing_*.root"))
