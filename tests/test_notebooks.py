"""Every notebook runs top to bottom in a real kernel; its outputs show widgets, plots and AUCs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
from conftest import HTTPServer
from nbclient import NotebookClient
from support import free_port

pytestmark = pytest.mark.slow

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
WIDGET = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
OFFLINE = "No network here, so the real CMS files could not be downloaded"
# TensorFlow's native log lines (absl or older style) and its Python INFO logger
NATIVE_LOG = re.compile(
    r"^(?:[IWEF]\d{4} \d\d:|\d{4}-\d\d-\d\d [\d:.]+: [IWEF] |WARNING: All log messages)"
    r"|INFO:tensorflow|oneDNN custom operations",
    flags=re.MULTILINE,
)


class Ran:
    """An executed notebook: its text outputs, the MIME types it displayed, its widget state."""

    def __init__(self, notebook: nbformat.NotebookNode) -> None:
        self.notebook = notebook
        texts, self.mimes, self.stderr = [], [], []
        for cell in notebook.cells:
            for output in cell.get("outputs", []):
                if output.output_type == "stream":
                    texts.append(output.text)
                    if output.name == "stderr":
                        self.stderr.append(output.text)
                data = output.get("data", {})
                self.mimes.extend(data)
                if "text/plain" in data:
                    texts.append(data["text/plain"])
        self.text = "\n".join(texts)
        self.widgets = notebook.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})

    def count(self, mime: str) -> int:
        return self.mimes.count(mime)

    def number(self, pattern: str) -> float:
        found = re.search(pattern, self.text)
        assert found, f"{pattern!r} not in the outputs:\n{self.text[-3000:]}"
        return float(found.group(1))

    def widget_values(self, model: str, key: str = "value") -> list:
        return [
            state["state"].get(key)
            for state in self.widgets.values()
            if state["model_name"] == model
        ]

    def widget_mentions(self, text: str) -> bool:
        """Some widget's state holds ``text`` (a file name in a Browser, say)."""
        return any(text in json.dumps(state["state"]) for state in self.widgets.values())

    def live_plot_drawn(self) -> bool:
        """An Output widget (the LivePlot's) holds a PNG."""
        outputs = [o for o in self.widget_values("OutputModel", "outputs") if o]
        return any("image/png" in out.get("data", {}) for outs in outputs for out in outs)

    def images(self) -> int:
        """Image widgets holding a PNG (their bytes are stored as base64 buffers)."""
        return sum(
            any(b["path"] == ["value"] and b["data"].startswith("iVBOR") for b in state["buffers"])
            for state in self.widgets.values()
            if state["model_name"] == "ImageModel" and state.get("buffers")
        )


def execute(name: str) -> Ran:
    """Run the notebook in a real kernel; its outputs never hold TensorFlow's log lines."""
    path = NOTEBOOKS / f"{name}.ipynb"
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
        store_widget_state=True,
    )
    client.execute()
    ran = Ran(notebook)
    logs = NATIVE_LOG.findall(ran.text)  # stdout and stderr streams, and displayed text
    assert not logs, f"TensorFlow log lines in {name}: {logs}"
    return ran


@pytest.fixture
def real_data(request, tmp_path, monkeypatch) -> bool:
    """True: the real files are served as the datasets mirror; False: the network is down.

    The kernel inherits ``MLAAS4HEP_DATA_URL``: a local mirror of the real files
    where this checkout has them, else a closed port (no download from the internet).
    """
    monkeypatch.setenv("MLAAS4HEP_DATA_DIR", str(tmp_path / "data-cache"))
    try:
        shared = request.getfixturevalue("shared_data")
    except pytest.skip.Exception:
        monkeypatch.setenv("MLAAS4HEP_DATA_URL", f"http://127.0.0.1:{free_port()}")
        yield False
        return
    server = HTTPServer(shared, tmp_path / "mirror.log")
    monkeypatch.setenv("MLAAS4HEP_DATA_URL", server.url)
    try:
        yield True
    finally:
        server.stop()


def test_notebooks_are_committed_without_outputs():
    names = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    assert names == [
        "01_browse_root_files.ipynb",
        "02_stream_and_train.ipynb",
        "03_serve_and_predict.ipynb",
        "04_tth_workbench.ipynb",
    ]
    for name in names:
        notebook = json.loads((NOTEBOOKS / name).read_text())
        for cell in notebook["cells"]:
            assert cell.get("outputs", []) == [], f"{name} has outputs"
            assert cell.get("execution_count") is None, f"{name} has execution counts"
        assert "widgets" not in notebook["metadata"]


def fell_back(ran: Ran, real: bool) -> bool:
    """Whether the notebook said, in one sentence, that it goes on with generated data."""
    assert ran.text.count(OFFLINE) == (0 if real else 1), ran.text[-2000:]
    return not real


def test_01_browse_root_files(real_data):
    ran = execute("01_browse_root_files")
    assert "TreeInfo(name='Events', kind='TTree', entries=6000, files=4)" in ran.text
    assert re.search(r"Jet_pt\s+float\[\]\s+float32\s+jagged\s+yes", ran.text)
    assert ran.count("image/png") >= 1
    assert "HTTP: http://127.0.0.1:" in ran.text
    assert "over HTTP: 1 file(s), 1 tree(s)" in ran.text
    assert "specs: 14 features, 6,000 events" in ran.text
    assert "['nJet', 'Jet_pt', 'Jet_btagDeepB', 'MET_pt'] -> 14 features" in ran.text
    assert ran.images() >= 1, "the Browser's preview image is empty"
    assert re.search(r"cms_hzz\s+218 kB\s+download", ran.text)
    assert re.search(r"opendata_higgs_tautau_ggf\s+\?\s+stream", ran.text)
    if fell_back(ran, real_data):
        assert not ran.widget_mentions("uproot-Zmumu.root")
    else:
        assert ran.widget_mentions("uproot-Zmumu.root"), "no Browser over the real file"
        assert "TreeInfo(name='events', kind='TTree', entries=2304, files=1)" in ran.text
        assert "not usable: [('Type', 'strings cannot be numeric features')]" in ran.text


def test_01_offline_goes_on_with_generated_data(tmp_path, monkeypatch):
    monkeypatch.setenv("MLAAS4HEP_DATA_DIR", str(tmp_path / "data-cache"))
    monkeypatch.setenv("MLAAS4HEP_DATA_URL", f"http://127.0.0.1:{free_port()}")
    ran = execute("01_browse_root_files")
    assert fell_back(ran, real=False)
    assert "specs: 14 features, 6,000 events" in ran.text
    assert not (tmp_path / "data-cache").exists() or not any((tmp_path / "data-cache").iterdir())


def test_02_stream_and_train(real_data):
    ran = execute("02_stream_and_train")
    assert "features from 7 branches" in ran.text
    assert ran.number(r"validation AUC = ([0-9.]+)") > 0.75
    assert ran.number(r"user model: validation AUC = ([0-9.]+)") > 0.7
    assert ran.count("image/png") >= 2  # ROC and scores
    assert ran.count(WIDGET) >= 2  # the live plot and the TrainingPanel
    assert ran.live_plot_drawn()
    if not fell_back(ran, real_data):
        assert ran.number(r"HZZ vs Zmumu: validation AUC = ([0-9.]+)") > 0.6
    assert ran.stderr == []


def test_03_serve_and_predict(real_data):
    ran = execute("03_serve_and_predict")
    assert ran.number(r"validation AUC = ([0-9.]+)") > 0.75
    assert "serves ['tth']" in ran.text
    assert ran.number(r"max \|served - local\| = ([0-9.e+-]+)") < 1e-4
    for route in ("/json", "TF Serving", "v2 infer", "raw events ->"):
        assert route in ran.text
    assert ran.count(WIDGET) >= 1
    assert "'tth' answered 500 predictions" in ran.text
    assert "after delete: []" in ran.text
    if not fell_back(ran, real_data):
        assert "served models: ['hzz', 'tth']" in ran.text
    assert ran.stderr == []


def test_04_tth_workbench(real_data):
    ran = execute("04_tth_workbench")
    assert ran.count(WIDGET) >= 1
    assert ran.number(r"validation AUC = ([0-9.]+)") > 0.75
    assert "served models: ['tth']" in ran.text
    assert ran.number(r"max \|served − local\| = ([0-9.e+-]+)") < 1e-4
    tabs = [s for s in ran.widgets.values() if s["model_name"] == "TabModel"]
    assert tabs
    assert tabs[0]["state"]["titles"] == ["1 · Browse", "2 · Train", "3 · Deploy"]
    # the last cell stops the local server, which takes its test prediction plot along
    assert ran.images() >= 2, "ROC and scores"
    assert ran.live_plot_drawn()
    if fell_back(ran, real_data):
        assert not ran.widget_mentions("uproot-HZZ.root")
    else:
        assert ran.widget_mentions("uproot-HZZ.root"), "no Browser over the real files"
        assert ran.number(r"HZZ vs Zmumu in a Workbench: validation AUC = ([0-9.]+)") > 0.6
    assert ran.stderr == []


def test_nothing_a_user_sees_mentions_the_ci_data_folder():
    seen = [*NOTEBOOKS.glob("*.ipynb"), REPO / "README.md", *(REPO / "mlaas4hep_nb").rglob("*.py")]
    for path in seen:
        assert "shared/data" not in path.read_text(), path
        assert "../shared" not in path.read_text(), path


# --- where the notebooks run: Binder and conda ------------------------------------------

REPO = NOTEBOOKS.parent
# pyproject names whose conda-forge package is called otherwise
CONDA_NAMES = {
    "matplotlib": "matplotlib-base",
    "tensorflow": "tensorflow-cpu",
    "isal": "python-isal",
}


def requirement(line: str) -> tuple[str, str]:
    """``"name>=1.2; marker"`` -> ``("name", ">=1.2")``."""
    found = re.match(r"\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*([^;]*)", line)
    return found.group(1).lower(), found.group(3).strip()


def conda_requirements(path: Path) -> dict[str, str]:
    lines = re.findall(r"^  - ([^\s#]+)\s*$", path.read_text(), flags=re.MULTILINE)
    return dict(requirement(line) for line in lines)


@pytest.mark.parametrize("env", ["environment.yml", "binder/environment.yml"])
def test_conda_environments_hold_the_pyproject_dependencies(env):
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    conda = conda_requirements(REPO / env)
    assert "conda-forge" in (REPO / env).read_text()
    for line in project["dependencies"]:
        name, bound = requirement(line)
        name = CONDA_NAMES.get(name, name)
        assert name in conda, f"{env} lacks {name} ({line} in pyproject.toml)"
        assert conda[name] == bound, f"{env}: {name}{conda[name]} but pyproject has {line}"


def test_binder_installs_the_package_and_opens_the_workbench():
    post_build = REPO / "binder" / "postBuild"
    assert post_build.stat().st_mode & 0o111, "postBuild must be executable"
    lines = post_build.read_text().splitlines()
    assert lines[0].startswith("#!")
    assert any(line.startswith("set -e") for line in lines)
    assert "pip install --no-deps" in post_build.read_text()
    readme = (REPO / "README.md").read_text()
    assert "OWNER" not in readme, "a Binder link with a placeholder does not launch"
    link = re.search(r"https://mybinder\.org/v2/gh/\S+?urlpath=lab/tree/(\S+?\.ipynb)", readme)
    assert link, "no Binder launch instructions in the README"
    assert (REPO / link.group(1)) == NOTEBOOKS / "04_tth_workbench.ipynb"
