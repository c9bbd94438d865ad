"""The Browser widget, driven as a user would: typing values, ticking boxes, clicking buttons."""

from __future__ import annotations

import threading

import awkward as ak
import numpy as np
import pytest
import uproot

import mlaas4hep_nb as mn
from mlaas4hep_nb.widgets import Browser, Selection
from mlaas4hep_nb.widgets._common import Status
from mlaas4hep_nb.widgets.browser import matches, tree_options


def rows(browser: Browser) -> dict[str, tuple]:
    """The branch table as {name: (checkbox, name button, type, shape, usable)}."""
    cells = browser.branch_table.children[5:]
    table = [cells[i : i + 5] for i in range(0, len(cells), 5)]
    return {row[1].description: tuple(row) for row in table}


@pytest.fixture
def browser(tth) -> Browser:
    browser = Browser(tth)
    browser.wait()
    return browser


def test_open_shows_trees_branches_and_labels(browser, tth):
    assert browser.status.error is None
    assert browser.files_opened == [*tth[1], *tth[0]]
    assert browser.tree == "Events"
    assert browser.tree_list.options == (("• Events  (TTree, 6,000 entries, 4 files)", "Events"),)
    table = rows(browser)
    assert set(table) == {b.name for b in mn.branches(tth[1][0], "Events")}
    _, _, kind, shape, usable = table["Jet_pt"]
    assert "float32" in kind.value
    assert shape.value == "jagged"
    assert rows(browser)["MET_pt"][3].value == "flat"
    assert usable.value == "✓"
    assert browser.files == tth
    menus = [row.children[0] for row in browser.label_rows.children]
    assert [m.value for m in menus] == [1, 1, 0, 0]
    assert browser.status.message.startswith("4 file(s), 1 tree(s)")


def test_filter_checkboxes_and_pick_shown(browser):
    browser.filter_box.value = "Jet_*"
    assert list(rows(browser)) == ["Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass", "Jet_btagDeepB"]
    browser.pick_shown.click()
    assert browser.picked == ["Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass", "Jet_btagDeepB"]
    rows(browser)["Jet_eta"][0].value = False  # untick a box
    browser.filter_box.value = "met"  # plain text: any part, any case
    assert list(rows(browser)) == ["MET_pt", "MET_phi"]
    rows(browser)["MET_pt"][0].value = True
    browser.filter_box.value = ""
    assert browser.picked == ["Jet_pt", "Jet_phi", "Jet_mass", "Jet_btagDeepB", "MET_pt"]
    assert rows(browser)["Jet_pt"][0].value is True
    assert "5 picked" in browser.picked_label.value
    browser.clear_picks.click()
    assert browser.picked == []
    assert not any(row[0].value for row in rows(browser).values())


def test_clicking_a_branch_shows_its_histogram(browser, tth):
    rows(browser)["nJet"][1].click()
    browser.wait()
    assert browser.previewed == "nJet"
    assert browser.histogram.sum() == 6000
    assert bytes(browser.preview_image.value).startswith(b"\x89PNG")
    assert browser.preview_image.layout.display == ""
    expected = mn.preview(browser.files_opened, "Events", "nJet")
    np.testing.assert_array_equal(browser.histogram.values(), expected.values())


def test_compute_specs_button_gives_the_api_result(browser, tth):
    browser.pick("nJet", "Jet_pt", "Jet_btagDeepB", "MET_pt")
    browser.max_len_box.value = 6
    browser.specs_button.click()
    browser.wait()
    picked = ["nJet", "Jet_pt", "Jet_btagDeepB", "MET_pt"]
    expected = mn.compute_specs({0: tth[0], 1: tth[1]}, branches=picked, max_len=6, progress=False)
    assert browser.spec.to_dict() == expected.to_dict()
    assert browser.spec.n_features == 1 + 6 + 6 + 1
    assert "14 features" in browser.summary.value
    assert "padded: Jet_pt 6, Jet_btagDeepB 6" in browser.summary.value
    assert browser.status.message == "specs: 14 features, 6,000 events"
    selection = browser.selection
    assert selection == Selection(
        files=tth,
        tree="Events",
        branches=["nJet", "Jet_pt", "Jet_btagDeepB", "MET_pt"],
        max_len=6,
        spec=browser.spec,
    )
    stream = browser.to_stream(chunk_size=2000)
    assert stream.spec is browser.spec
    assert stream.features == expected.features
    x, mask, _ = next(iter(stream.chunks()))
    assert x.shape[1] == mask.shape[1] == 14


def test_a_changed_selection_drops_the_specs(browser):
    browser.pick("MET_pt")
    browser.compute_specs(wait=True)
    assert browser.selection.spec is not None
    browser.cut_box.value = "nJet >= 4"
    assert browser.selection.spec is None
    assert browser.selection.cut == "nJet >= 4"
    assert "compute them again" in browser.summary.value


def test_labels_editor_assigns_files_to_classes(tth):
    browser = Browser(tth[1] + tth[0])
    browser.wait()
    assert browser.files == {}
    menus = [row.children[0] for row in browser.label_rows.children]
    assert [m.options[0] for m in menus] == [("not used", None)] * 4
    with pytest.raises(ValueError, match="at least two classes"):
        browser.to_stream()
    for menu, label in zip(menus, [1, None, 0, 0], strict=True):
        menu.value = label
    assert browser.files == {0: tth[0], 1: [tth[1][0]]}
    browser.set_label("*tth_1.root", 1)
    assert browser.files == tth
    browser.classes.value = 3
    assert [label for label, _ in browser.label_rows.children[0].children[0].options] == [
        "not used",
        "0",
        "1",
        "2",
    ]
    with pytest.raises(KeyError, match="none of the opened files"):
        browser.set_label("/elsewhere.root", 0)


def test_open_button_recent_paths_and_globs(tth, tmp_path):
    browser = Browser()
    glob = tth[1][0].rsplit("_", 1)[0] + "_*.root"
    browser.path_box.value = glob
    browser.open_button.click()
    browser.wait()
    assert browser.files_opened == tth[1]
    assert browser.recent.options[1] == (glob, glob)
    browser.path_box.value = tth[0][0]
    browser.open_button.click()
    browser.wait()
    assert browser.files_opened == [tth[0][0]]
    browser.recent.value = glob  # choosing a recent path opens it again
    browser.wait()
    assert browser.files_opened == tth[1]
    assert Browser().recent.options[1:3] == ((glob, glob), (tth[0][0], tth[0][0]))


def test_nested_directories_and_rntuples_in_the_tree(tmp_path, tth_rntuple):
    path = tmp_path / "nested.root"
    with uproot.recreate(path) as file:
        file.mktree("top", {"x": np.float64}).extend({"x": np.arange(5.0)})
        file.mktree("a/b/deep", {"y": np.int32}).extend({"y": np.arange(3, dtype=np.int32)})
        file["a/ntuple"] = {"z": np.arange(4.0), "s": ak.Array(["a", "bb", "c", "d"])}
    browser = Browser(str(path), tree="a/ntuple")
    browser.wait()
    labels = [label for label, _ in browser.tree_list.options]
    assert labels == [
        "• top  (TTree, 5 entries)",
        "▾ a/",
        "\u00a0\u00a0\u00a0▾ b/",
        "\u00a0\u00a0\u00a0\u00a0\u00a0\u00a0• deep  (TTree, 3 entries)",
        "\u00a0\u00a0\u00a0• ntuple  (RNTuple, 4 entries)",
    ]
    assert browser.tree == "a/ntuple"
    box, _, _, _, usable = rows(browser)["s"]
    assert box.disabled
    assert "strings" in usable.value
    with pytest.raises(KeyError, match="no supported branch matches 's'"):
        browser.pick("s")
    browser.tree_list.value = "a/"  # a directory: nothing to load
    assert browser.tree == "a/ntuple"
    release = threading.Event()
    browser.job.start("waiting", release.wait, lambda _: "done")
    browser.tree_list.value = "a/b/deep"  # refused while busy, and the list says so
    assert browser.tree_list.value == "a/ntuple"
    assert browser.status.message == "still waiting: wait for it to finish (or stop it)"
    release.set()
    browser.wait()
    browser.tree_list.value = "a/b/deep"
    browser.wait()
    assert list(rows(browser)) == ["y"]
    rntuple = Browser(tth_rntuple)
    rntuple.wait()
    assert rntuple.trees[0].kind == "RNTuple"
    assert "RNTuple, 6,000 entries" in rntuple.tree_list.options[0][0]


def test_errors_show_in_the_panel_with_the_traceback_one_click_away(tmp_path):
    browser = Browser()
    browser.path_box.value = str(tmp_path / "missing.root")
    browser.open_button.click()
    with pytest.raises(mn.errors.SourceError):
        browser.wait()
    status = browser.status
    assert status.message.startswith("opening ")
    assert "failed: SourceError: ROOT file not found" in status.message
    assert status.show_traceback.layout.display == ""
    assert status.traceback_html.layout.display == "none"
    status.show_traceback.value = True  # the one click
    assert status.traceback_html.layout.display == ""
    assert "Traceback (most recent call last)" in status.traceback_html.value
    assert "expand" in status.traceback


def test_http_and_xrootd_urls(http_url, xrootd_url):
    for base in (http_url, xrootd_url):
        browser = Browser(f"{base}/tth_0.root")
        browser.wait()
        assert browser.trees == [mn.TreeInfo("Events", "TTree", 1500)]
        browser.show_preview("MET_pt", wait=True)
        assert browser.histogram.sum() == 1500


def test_real_files(shared_data):
    browser = Browser(str(shared_data / "uproot-Zmumu.root"), tree="events")
    browser.wait()
    box, _, _, _, usable = rows(browser)["Type"]
    assert box.disabled
    assert "strings" in usable.value
    browser.pick("E1", "pt*")
    browser.compute_specs(wait=True)
    assert [b.name for b in browser.spec.branches] == ["E1", "pt1", "pt2"]


def test_helpers():
    assert matches("Jet_pt", "jet")
    assert matches("Jet_pt", "Jet_*")
    assert not matches("nJet", "Jet_*")
    assert matches("anything", " ")
    info = mn.TreeInfo("d/t", "TTree", 1234, 2)
    assert tree_options([info]) == [
        ("▾ d/", "d/"),
        ("\u00a0\u00a0\u00a0• t  (TTree, 1,234 entries, 2 files)", "d/t"),
    ]


def test_unmeasured_work_shows_its_time():
    status = Status()
    status.busy("computing specs…")
    assert status.progress.bar_style == "info"
    status.tick(3.2)
    assert status.message == "computing specs… (3 s)"
    status.busy("epoch 1/2", 0.25)
    assert status.progress.value == 0.25
    status.tick(4)
    assert status.message == "epoch 1/2"
    status.succeed("done")
    status.tick(5)
    assert status.message == "done"
    assert status.progress.layout.display == "none"


def test_specs_progress_is_measured(browser, tmp_path, monkeypatch):
    monkeypatch.setenv("MLAAS4HEP_NB_CACHE", str(tmp_path))  # a cached spec reads nothing
    seen = []
    browser.status.text.observe(
        lambda _: seen.append((browser.status.progress.value, browser.status.message)), "value"
    )
    browser.compute_specs(wait=True)
    measured = [(value, text) for value, text in seen if "events" in text and " of " in text]
    assert measured[-1] == (1.0, "computing specs: 6,000 of 6,000 events")
    assert browser.spec.n_events == 6000


def test_fixed_size_arrays_show_as_fixed(tmp_path):
    path = tmp_path / "fixed.root"
    with uproot.recreate(path) as file:
        file.mktree("Events", {"a": np.dtype((np.float32, (4,))), "x": np.float64}).extend(
            {"a": np.ones((5, 4), np.float32), "x": np.arange(5.0)}
        )
    browser = Browser(str(path))
    browser.wait()
    assert rows(browser)["a"][3].value == "fixed[4]"
    assert rows(browser)["x"][3].value == "flat"
