"""The datasets: the synthetic ttH sample, and the registry of real files fetched via a mirror."""

from __future__ import annotations

import hashlib
import re
import socket
import threading
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
from conftest import HTTPServer
from support import free_port

import mlaas4hep_nb as mn
from mlaas4hep_nb.datasets import DataFetchError

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


# --- the registry of real files, fetched through a mirror ---------------------------------


def sha256_of(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_registry_lists_real_files_with_sizes_and_hashes():
    entries = {d.name: d for d in mn.datasets.available()}
    assert {"cms_hzz", "cms_zmumu", "cms_drell_yan", "cms_nanoaod_ttbar"} <= set(entries)
    for dataset in entries.values():
        assert dataset.url.startswith("https://")
        assert dataset.description
        if dataset.streamed:
            assert dataset.xrootd.startswith("root://eospublic.cern.ch//eos/")
        else:
            assert len(dataset.sha256) == 64
            assert dataset.size > 0
    tautau = entries["opendata_higgs_tautau_ggf"]
    assert tautau.url == "https://opendata.cern.ch/record/12351/files/GluGluToHToTauTau.root"
    assert entries["cms_hzz"].size_text == "218 kB"


def test_fetch_downloads_once_checks_the_hash_and_reads(data_mirror, shared_data, tmp_path):
    path = mn.datasets.fetch("cms_hzz", progress=False)
    assert Path(path).parent == tmp_path / "cache"
    assert sha256_of(path) == sha256_of(shared_data / "uproot-HZZ.root")
    assert data_mirror.requests() == ["GET /uproot-HZZ.root"]
    assert mn.datasets.fetch("cms_hzz", progress=False) == path
    assert data_mirror.requests() == ["GET /uproot-HZZ.root"]  # the second one: from the cache
    assert mn.list_trees(path)[0].entries == 2421


def test_a_partial_file_in_the_cache_is_downloaded_again(data_mirror, shared_data, tmp_path):
    whole = (shared_data / "uproot-Zmumu.root").read_bytes()
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "uproot-Zmumu.root").write_bytes(whole[: len(whole) // 2])
    path = mn.datasets.fetch("cms_zmumu", progress=False)
    assert Path(path).read_bytes() == whole
    assert data_mirror.requests() == ["GET /uproot-Zmumu.root"]


def test_streamed_files_come_from_the_mirror_too(data_mirror):
    url = mn.datasets.fetch("opendata_higgs_tautau_ggf")
    assert url == f"{data_mirror.url}/GluGluToHToTauTau.root"
    assert data_mirror.requests() == []  # streamed: nothing is downloaded


def test_streamed_files_without_a_mirror_are_urls(monkeypatch):
    monkeypatch.delenv("MLAAS4HEP_DATA_URL", raising=False)
    dimuon = mn.datasets.fetch("opendata_dimuon_2012")
    assert (
        dimuon == "https://opendata.cern.ch/record/12341/files/Run2012BC_DoubleMuParked_Muons.root"
    )
    assert mn.datasets.fetch("opendata_higgs_tautau_vbf", protocol="root") == (
        "root://eospublic.cern.ch//eos/root-eos/HiggsTauTauReduced/VBF_HToTauTau.root"
    )
    with pytest.raises(ValueError, match="no root:// location"):
        mn.datasets.fetch("cms_hzz", protocol="root")


def test_a_tampered_file_is_refused_and_not_kept(tmp_path):
    folder = tmp_path / "mirror"
    folder.mkdir()
    (folder / "uproot-HZZ.root").write_bytes(b"root" + bytes(1000))
    server = HTTPServer(folder, tmp_path / "mirror.log")
    cache = tmp_path / "cache"
    try:
        with pytest.raises(DataFetchError, match=r"cms_hzz.*does not match its registered sha256"):
            mn.datasets.fetch("cms_hzz", base_url=server.url, cache_dir=cache, retries=0)
    finally:
        server.stop()
    assert list(cache.iterdir()) == []  # neither the file nor a temporary one


def test_offline_is_one_clear_error_naming_the_url_and_the_mirror_setting(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(DataFetchError) as caught:
        mn.datasets.fetch("cms_zmumu", base_url=dead, cache_dir=tmp_path, retries=0)
    message = str(caught.value)
    assert f"{dead}/uproot-Zmumu.root (connection refused)" in message
    assert "MLAAS4HEP_DATA_URL" in message
    assert "\n" not in message
    assert not any(tmp_path.iterdir())


def test_unknown_names_list_the_registered_ones():
    with pytest.raises(ValueError, match="no dataset 'hzz'.*cms_hzz"):
        mn.datasets.fetch("hzz")


def test_a_download_cut_short_is_refused_and_not_kept(tmp_path):
    """A server that announces the whole file but closes the connection halfway."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def serve_half():
            for _ in range(2):  # the first attempt and one retry
                connection, _ = listener.accept()
                with connection:
                    connection.recv(65536)
                    head = b"HTTP/1.1 200 OK\r\nContent-Length: 217945\r\n\r\n"
                    connection.sendall(head + b"root" + bytes(100_000))

        thread = threading.Thread(target=serve_half, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with pytest.raises(DataFetchError, match=r"cms_hzz from http://127.*connection broke"):
            mn.datasets.fetch("cms_hzz", base_url=url, cache_dir=tmp_path, retries=1)
        thread.join(10)
    assert list(tmp_path.iterdir()) == []


def test_command_line_lists_and_fetches(data_mirror, capsys):
    from mlaas4hep_nb.cli import main

    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"cms_hzz\s+218 kB\s+download\s+events", out)
    assert main(["fetch", "cms_zmumu"]) == 0
    path = capsys.readouterr().out.strip()
    assert path.endswith("uproot-Zmumu.root")
    assert mn.list_trees(path)[0].entries == 2304
    assert main(["fetch", "opendata_higgs_tautau_vbf", "--protocol", "root"]) == 0
    assert capsys.readouterr().out.strip() == f"{data_mirror.url}/VBF_HToTauTau.root"
    assert main(["fetch", "zmumu"]) == 2
    assert "no dataset 'zmumu'" in capsys.readouterr().err


def test_make_wide_writes_a_tree_as_wide_as_nanoaod(tmp_path):
    path = mn.datasets.make_wide(tmp_path / "wide.root", n_collections=3, n_columns=2)
    names = [b.name for b in mn.branches(path)]
    assert names == [
        f"{prefix}Coll{c:02d}{suffix}"
        for c in range(3)
        for prefix, suffix in (("n", ""), ("", "_f00"), ("", "_f01"))
    ]
    assert len(mn.branches(mn.datasets.make_wide(tmp_path / "default.root"))) == 55 * 19
