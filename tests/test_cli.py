"""The mlaas4hep-nb command: make-data, browse, specs, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

from mlaas4hep_nb.cli import main


def test_make_data_browse_and_specs(tmp_path, capsys):
    assert (
        main(
            [
                "make-data",
                str(tmp_path / "data"),
                "--signal",
                "200",
                "--background",
                "300",
                "--fmt",
                "RNTuple",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "label 1:" in out
    assert "label 0:" in out
    signal = str(tmp_path / "data" / "tth_0.root")

    assert main(["browse", signal]) == 0
    out = capsys.readouterr().out
    assert "Events  RNTuple  200" in out
    assert "Jet_pt" in out
    assert "jagged" in out

    spec_path = tmp_path / "spec.json"
    assert (
        main(
            [
                "specs",
                str(tmp_path / "data" / "*.root"),
                "--branches",
                "MET_pt",
                "Jet_pt",
                "--max-len",
                "4",
                "--out",
                str(spec_path),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "5 features from 2 branches, 500 events" in out
    saved = json.loads(spec_path.read_text())
    assert saved["features"] == ["MET_pt", "Jet_pt_0", "Jet_pt_1", "Jet_pt_2", "Jet_pt_3"]


def test_errors_exit_2_with_the_reason(tmp_path, capsys):
    assert main(["browse", str(tmp_path / "missing.root")]) == 2
    assert "missing.root" in capsys.readouterr().err


def test_console_script_is_installed():
    out = subprocess.run(
        [sys.executable, "-m", "mlaas4hep_nb.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for command in ("make-data", "browse", "specs", "demo"):
        assert command in out.stdout
