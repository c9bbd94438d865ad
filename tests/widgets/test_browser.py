"""The Browser widget, driven as a user would: typing values, ticking boxes, clicking buttons."""

from __future__ import annotations

import threading
import time

import awkward as ak
import numpy as np
import pytest
import uproot

import mlaas4hep_nb as mn
from mlaas4hep_nb.widgets import Browser, Selection
from mlaas4hep_nb.widgets._common import Status
from mlaas4hep_nb.widgets.browser import tree_options
from mlaas4hep_nb.widgets.labels import NOT_USED


def rows(browser: Browser) -> dict[str, tuple]:
    """The page of the branch table: {name or "group:NAME": (box, name button, text cells
    widget, Row)}."""
    return {
        (f"group:{row.key}" if row.kind == "group" else row.key): (box, button, cells, row)
        for row, box, button, cells in browser.table.shown()
    }


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
    table = rows(browser)  # groups folded: the event numbers, then one row per collection
    assert list(table) == [
        "run",
        "luminosityBlock",
        "event",
        "group:Jet",
        "group:Electron",
        "group:Muon",
        "group:MET",
    ]
    assert table["group:Jet"][1].description == "▸ Jet (6)"
    table["group:Jet"][1].click()  # unfold
    table = rows(browser)
    assert table["group:Jet"][1].description == "▾ Jet (6)"
    _, _, cells, row = table["Jet_pt"]
    assert "float32" in row.type
    assert row.shape == "jagged"
    assert row.files == "0: 2/2 · 1: 2/2"
    assert row.usable == "✓"
    assert all(text in cells.value for text in (row.type, row.shape, row.files, row.usable))
    browser.expand()
    assert {row.key for row in browser.table.rows if row.kind == "branch"} == {
        b.name for b in mn.branches(tth[1][0], "Events")
    }
    assert rows(browser)["MET_pt"][3].shape == "flat"
    assert browser.files == tth
    menus = [row.children[0] for row in browser.label_rows.children]
    assert [m.value for m in menus] == [1, 1, 0, 0]
    assert browser.status.message.startswith("4 file(s), 1 tree(s)")


def test_filter_picks_and_groups(browser):
    browser.filter("Jet_*")
    assert list(rows(browser)) == [
        "group:Jet",
        "Jet_pt",
        "Jet_eta",
        "Jet_phi",
        "Jet_mass",
        "Jet_btagDeepB",
    ]
    assert rows(browser)["group:Jet"][1].description == "Jet (5 of 6)"
    browser.pick_matching.click()
    assert browser.picked == ["Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass", "Jet_btagDeepB"]
    assert rows(browser)["group:Jet"][0].value is True  # the group's box: all of it picked
    rows(browser)["Jet_eta"][0].value = False  # untick a box
    assert rows(browser)["group:Jet"][0].value is False
    browser.filter("met")  # names are case-sensitive, and exact without a wildcard
    assert rows(browser) == {}
    assert "nothing matches 'met'" in browser.table.message.value
    assert "try *MET*" in browser.table.message.value
    browser.filter("MET")  # a group by its name
    assert list(rows(browser)) == ["group:MET", "MET_pt", "MET_phi"]
    rows(browser)["MET_pt"][0].value = True
    browser.filter("Muon")
    rows(browser)["group:Muon"][0].value = True  # the whole collection in one click
    assert [n for n in browser.picked if "Muon" in n] == [
        "nMuon",
        "Muon_pt",
        "Muon_eta",
        "Muon_phi",
        "Muon_charge",
    ]
    browser.filter("")
    assert browser.picked[:5] == ["Jet_pt", "Jet_phi", "Jet_mass", "Jet_btagDeepB", "nMuon"]
    assert "10 picked" in browser.picked_label.value
    assert "mlaas4hep-oneline" in browser.picked_label.value  # one line, the rest in its title
    browser.clear_picks.click()
    assert browser.picked == []
    browser.expand()
    assert not any(row[0].value for row in rows(browser).values())


def test_typing_in_the_filter_waits_for_a_pause(browser):
    for text in ("n", "nJ", "nJe", "nJet"):
        browser.filter_box.value = text  # as keystrokes arrive
    assert "group:Electron" in rows(browser)  # not yet filtered
    deadline = time.monotonic() + 5
    while "group:Electron" in rows(browser) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert list(rows(browser)) == ["group:Jet", "nJet"]


def test_clicking_a_branch_shows_its_histogram(browser, tth):
    browser.expand("Jet")
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
    assert [m.options[0] for m in menus] == [("not used", NOT_USED)] * 4
    assert [m.label for m in menus] == ["not used"] * 4  # shown, not a blank menu
    with pytest.raises(ValueError, match="at least two classes"):
        browser.to_stream()
    for menu, label in zip(menus, [1, NOT_USED, 0, 0], strict=True):
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
    box, _, _, row = rows(browser)["s"]
    assert box.disabled
    assert "strings" in row.usable
    with pytest.raises(KeyError, match="no usable branch or alias matches 's'"):
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
    box, _, _, row = rows(browser)["Type"]
    assert box.disabled
    assert "strings" in row.usable
    browser.pick("E1", "pt*")
    browser.compute_specs(wait=True)
    assert [b.name for b in browser.spec.branches] == ["E1", "pt1", "pt2"]


def test_helpers():
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
    assert rows(browser)["a"][3].shape == "fixed[4]"
    assert rows(browser)["x"][3].shape == "flat"


# --- a thousand branches ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def wide_file(tmp_path_factory) -> str:
    """A NanoAOD-like tree of 55 collections (counter + 18 columns each): 1,045 branches."""
    return mn.datasets.make_wide(tmp_path_factory.mktemp("wide") / "wide.root")


def widget_count() -> int:
    from ipywidgets.widgets.widget import _instances

    return len(_instances)


def test_a_thousand_branches_page_by_page_with_a_flat_widget_count(wide_file):
    browser = Browser(wide_file, page_size=40)
    browser.wait()
    names = [b.name for b in browser.branch_infos]
    assert len(names) == 55 * 19
    groups = [row for row in browser.table.rows if row.kind == "group"]
    assert len(groups) == 55  # folded: one row per collection
    assert groups[0].text == "▸ Coll00 (19)"
    assert browser.table.position.value == "rows 1–40 of 55 · page 1 of 2"
    browser.expand()
    assert browser.table.position.value == f"rows 1–40 of {55 * 20:,} · page 1 of 28"
    seen = []
    for _ in range(browser.table.pages):  # every branch is on some page
        seen += [row.key for row in browser.table.visible if row.kind == "branch"]
        browser.table.next.click()
    assert seen == names
    assert browser.table.next.disabled
    first = widget_count()
    patterns = ["Coll1*_f0*", "*_f17", "Coll42", "nColl07", "x*", "Coll0*", "", "coll00_f00"]
    for i in range(30):
        browser.filter(patterns[i % len(patterns)])
    assert abs(widget_count() - first) <= 0.1 * first
    browser.filter("Coll42")
    assert [row.key for row in browser.table.visible][:3] == ["Coll42", "nColl42", "Coll42_f00"]
    browser.filter("coll00_f00")
    assert "did you mean 'Coll00_f00'?" in browser.table.message.value


# --- files of other schemas, aliases per class, a class per event ----------------------------


@pytest.fixture(scope="module")
def two_schemas(tmp_path_factory) -> dict[int, str]:
    """H->ZZ-like signal (nMuon, Muon_Px, Muon_Py) and Z->mumu-like background (pt1, pt2)."""
    folder = tmp_path_factory.mktemp("schemas")
    rng = np.random.default_rng(5)
    n = 2000
    counts = rng.integers(1, 5, n)
    total = int(counts.sum())
    signal = {
        "Muon": ak.zip(
            {
                "Px": ak.unflatten(rng.normal(0, 45, total).astype(np.float32), counts),
                "Py": ak.unflatten(rng.normal(0, 45, total).astype(np.float32), counts),
            }
        ),
        "MET_px": rng.normal(0, 30, n).astype(np.float32),
    }
    background = {
        "pt1": rng.exponential(25, n).astype(np.float32),
        "pt2": rng.exponential(15, n).astype(np.float32),
        "MET_px": rng.normal(0, 20, n).astype(np.float32),
    }
    paths = {}
    for label, columns in ((1, signal), (0, background)):
        path = folder / f"sample_{label}.root"
        types = {
            k: v.type.content if isinstance(v, ak.Array) else v.dtype for k, v in columns.items()
        }
        with uproot.recreate(path) as file:
            file.mktree("events", types)
            file["events"].extend(columns)
        paths[label] = str(path)
    return paths


MU_PT = {1: {"mu_pt": "max(sqrt(Muon_Px**2 + Muon_Py**2))"}, 0: {"mu_pt": "fmax(pt1, pt2)"}}


def test_files_of_other_schemas_train_through_the_workbench(two_schemas):
    from mlaas4hep_nb.widgets import Workbench

    wb = Workbench(two_schemas, aliases=MU_PT, browser={"tree": "events"}, training={"epochs": 2})
    browser = wb.browser
    browser.wait()
    browser.filter("Muon_Px")  # the signal file's branch: missing in the background file
    box, _, _, row = rows(browser)["Muon_Px"]
    assert "0: 0/1 · 1: 1/1" in row.files
    assert box.disabled
    assert "missing in some files" in row.usable
    browser.filter("MET_px")
    box, _, _, row = rows(browser)["MET_px"]
    assert (row.files, row.usable, box.disabled) == ("0: 1/1 · 1: 1/1", "✓", False)
    browser.filter("mu_pt")
    row = rows(browser)["mu_pt"][3]
    assert (row.type, row.usable, row.files) == ("= alias", "✓", "0: alias · 1: alias")
    assert "float32" in row.shape

    editor = browser.alias_editor  # a second alias, typed class by class as a user would
    editor.target.value, editor.name.value, editor.expression.value = 1, "n_mu", "nMuon"
    editor.set_button.click()
    browser.filter("n_mu")
    assert "not defined for class 0" in rows(browser)["n_mu"][3].usable
    editor.target.value, editor.name.value, editor.expression.value = 0, "n_mu", "2 + 0 * pt1"
    editor.set_button.click()
    assert rows(browser)["n_mu"][3].usable == "✓"
    editor.name.value, editor.expression.value = "bad", "Muon_Px * 2"
    editor.set_button.click()  # for class 0, whose file has no Muon_Px: refused on the spot
    listing = " ".join(row.children[2].value for row in editor.listing.children)
    assert "✗ 'Muon_Px * 2' names 'Muon_Px', which is not a branch of" in listing
    editor.remove("bad")

    browser.pick("mu_pt", "n_mu", "MET_px")
    browser.specs_button.click()
    browser.wait()
    assert browser.spec.features == ["mu_pt", "n_mu", "MET_px"]
    assert browser.selection.describe() == (
        "files per class 0: 1, 1: 1; tree 'events'; 3 branches (2 aliases); 3 features"
    )
    wb.widget.selected_index = 1
    wb.training.train_button.click()
    wb.training.wait()
    assert wb.training.result["auc"] > 0.6
    assert wb.training.stream.spec is browser.spec


def test_nothing_picked_takes_the_branches_every_file_has(two_schemas):
    browser = Browser(two_schemas, tree="events", aliases=MU_PT)
    browser.wait()
    assert browser.selection.branches == ["mu_pt", "MET_px"]
    browser.compute_specs(wait=True)
    assert browser.spec.features == ["mu_pt", "MET_px"]


def test_one_file_feeds_both_classes_by_an_expression(tth):
    browser = Browser(tth[1][0], label="nJet >= 7", branches=["MET_pt", "Jet_pt"], max_len=4)
    browser.wait()
    assert browser.label_editor.mode.value == "event"
    assert browser.selection.label == "nJet >= 7"
    stream = browser.to_stream()
    y = np.concatenate([part[2] for part in stream.chunks()])
    n_jet = uproot.open(tth[1][0])["Events"]["nJet"].array(library="np")
    assert np.bincount(y.astype(int)).tolist() == [int((n_jet < 7).sum()), int((n_jet >= 7).sum())]
    assert stream.features == [f"Jet_pt_{i}" for i in range(4)] + ["MET_pt"]
    from mlaas4hep_nb.widgets import TrainingPanel

    line = TrainingPanel(browser).source_line.value
    assert "1 file(s), each event's class = nJet &gt;= 7; tree 'Events'; 2 branches" in line
    browser.label_editor.mode.value = "file"  # back to a class per file: none is labelled yet
    with pytest.raises(ValueError, match="at least two classes"):
        browser.to_stream()


def test_constant_branches_are_flagged_after_the_specs(tmp_path):
    path = tmp_path / "constant.root"
    with uproot.recreate(path) as file:
        columns = {
            "x": np.arange(50.0),
            "btag": np.full(50, -1.0),
            "Jet": ak.zip({"flav": ak.unflatten(np.full(100, -3000.0), np.arange(50) % 5)}),
        }
        file.mktree("Events", {k: ak.Array(v).type.content for k, v in columns.items()})
        file["Events"].extend(columns)
    browser = Browser(str(path))
    browser.wait()
    browser.compute_specs(wait=True)  # the API warns; the panel shows it instead
    assert browser.spec.features == ["x", "nJet"]
    assert "left out 2 constant branch(es)" in browser.status.message
    assert "⚠ left out 2 constant" in browser.status.text.value
    assert rows(browser)["btag"][3].usable.endswith("constant: every value is -1</span>")
    browser.expand("Jet")
    assert "every value is -3000" in rows(browser)["Jet_flav"][3].usable
    assert rows(browser)["x"][3].usable == "✓"
