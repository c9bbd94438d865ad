"""A real browser: JupyterLab in headless Chromium runs the ttH workbench and is clicked through.

JupyterLab serves a copy of ``notebooks/04_tth_workbench.ipynb`` (so nothing is
saved into the repository) on 127.0.0.1; Playwright drives Debian's Chromium:
run the notebook up to the workbench, filter and tick branches, preview one,
compute the specs, Train, start the local TFaaS server and Push, then test a
prediction; no button's text is cut on any tab. A second notebook browses a
tree of a thousand branches: filter changes show the rows the kernel holds.
Screenshots of each step go to ``test-artifacts/browser/``; the timings of the
thousand-branch page are measured by ``benchmarks/bench_browser.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from support import free_port, wait_for_port

pytestmark = [pytest.mark.slow, pytest.mark.browser]

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "04_tth_workbench.ipynb"
ARTIFACTS = REPO / "test-artifacts" / "browser"
CHROMIUM = Path(os.environ.get("MLAAS4HEP_NB_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
BRANCHES = ["nJet", "Jet_pt", "Jet_btagDeepB", "MET_pt"]
BRANCH_BUTTON = "xpath=//button[contains(@class, 'mlaas4hep-branch')]"
# no news or update checks from the internet, no autosave
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
}


KERNEL_ROWS = 'print("kernel rows:", "|".join(row.text for row in wide.table.visible))'


def wide_notebook(path: Path) -> nbformat.NotebookNode:
    """A notebook that writes a tree of 55 collections (1,045 branches) and browses it."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell(
            f"import mlaas4hep_nb as mn\nPATH = mn.datasets.make_wide({str(path)!r})"
        ),
        nbformat.v4.new_code_cell(
            "from mlaas4hep_nb.widgets import Browser\nwide = Browser(PATH, page_size=40)\nwide"
        ),
        nbformat.v4.new_code_cell(KERNEL_ROWS),
    ]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    return notebook


def cut_buttons(element) -> list[str]:
    """Visible buttons in ``element`` whose text does not fit them, and the classes of
    elements scrolled sideways or showing a sideways scrollbar (content wider than its place)."""
    return element.evaluate(
        "el => [...el.querySelectorAll('button')]"
        ".filter(b => b.offsetParent !== null && b.scrollWidth > b.clientWidth + 1)"
        ".map(b => b.textContent.trim()).concat([...el.querySelectorAll('*')].filter(e =>"
        " e.scrollLeft > 0 || (e.scrollWidth > e.clientWidth + 1"
        " && ['auto', 'scroll'].includes(getComputedStyle(e).overflowX))).map(e => e.className))"
    )


def cells_to_workbench() -> int:
    """How many cells to run: up to and including the one that displays the Workbench."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code" and "Workbench(" in cell.source:
            return index + 1
    raise AssertionError(f"no cell displays a Workbench in {NOTEBOOK}")


@pytest.fixture(scope="module")
def chromium():
    if not CHROMIUM.exists():
        pytest.skip(
            f"no Chromium at {CHROMIUM} (Debian package chromium; `make test` installs it "
            "when run as root, or set MLAAS4HEP_NB_CHROMIUM)"
        )
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
        except playwright_api.Error as err:
            pytest.skip(f"Chromium at {CHROMIUM} does not start headless: {err}")
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on 127.0.0.1 serving a copy of the notebook; yields (url, token, root)."""
    root = tmp_path_factory.mktemp("lab")
    (root / "notebooks").mkdir()
    shutil.copy(NOTEBOOK, root / "notebooks" / NOTEBOOK.name)
    nbformat.write(wide_notebook(root / "wide.root"), root / "notebooks" / "wide.ipynb")
    settings = root / ".settings"
    for name, values in LAB_SETTINGS.items():
        path = settings / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    token = os.urandom(12).hex()
    port = free_port()
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(root / ".config"),
        "JUPYTER_RUNTIME_DIR": str(root / ".runtime"),
        "IPYTHONDIR": str(root / ".ipython"),
    }
    log = (root / "lab.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            f"--LabApp.user_settings_dir={settings}",
            f"--LabApp.workspaces_dir={root / '.workspaces'}",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",
            *(["--allow-root"] if os.geteuid() == 0 else []),
        ],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, process, "JupyterLab", timeout=60)
        yield f"http://127.0.0.1:{port}", token, root
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / "lab.log", ARTIFACTS / "jupyterlab.log")


class Shots:
    """Numbered screenshots in test-artifacts/browser/."""

    def __init__(self, page) -> None:
        self.page = page
        self.n = 0
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for old in ARTIFACTS.glob("*.png"):
            old.unlink()

    def __call__(self, what: str, element=None) -> None:
        """The page, or just ``element`` (all of it, though the notebook scrolls)."""
        self.n += 1
        path = str(ARTIFACTS / f"{self.n:02d}-{what}.png")
        if element is not None:
            element.screenshot(path=path)
        else:
            self.page.screenshot(path=path, full_page=True)


def rendered_images(panel) -> int:
    """Images in ``panel`` that the browser decoded (a PNG with a width)."""
    return panel.evaluate(
        "el => [...el.querySelectorAll('img')].filter(i => i.complete && i.naturalWidth > 0).length"
    )


def open_notebook(page, lab, name: str, holding: str):
    """Open ``notebooks/name`` in JupyterLab; its panel (the visible one holding ``holding``)."""
    url, token, _ = lab
    page.goto(f"{url}/lab/tree/notebooks/{name}?reset&token={token}", timeout=120_000)
    notebook = page.locator(".jp-NotebookPanel:visible", has_text=holding)
    notebook.locator(".jp-Cell").first.wait_for(timeout=120_000)
    page.locator(".jp-StatusBar-TextItem", has_text="| Idle").wait_for(timeout=120_000)
    return notebook


def run_cells(page, notebook, count: int, tries: int = 3) -> None:
    """Shift+Enter cell by cell, as a user would; again if the kernel dropped the first tries."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    first_prompt = notebook.locator(".jp-CodeCell .jp-InputPrompt").first
    for _ in range(tries):
        notebook.locator(".jp-Cell").first.click()
        page.keyboard.press("Escape")
        for _ in range(count):
            page.keyboard.press("Shift+Enter")
        try:
            first_prompt.filter(has_text=re.compile(r"\[(\*|\d+)\]")).wait_for(timeout=20_000)
            return
        except PlaywrightTimeout:
            continue
    raise AssertionError(f"the notebook's cells did not run after {tries} tries")


@contextlib.contextmanager
def new_page(chromium):
    """A page at 1,400 x 1,000 and the errors it reports (page errors, lost widget messages)."""
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.on("console", lambda m: errors.append(m.text) if "Could not process" in m.text else None)
    try:
        yield page, errors
    finally:
        context.close()


def test_click_through_the_workbench_in_jupyterlab(chromium, lab):
    with new_page(chromium) as (page, errors):
        shot = Shots(page)
        try:
            run_through_the_workbench(page, lab, shot)
            assert not errors, errors
        finally:
            shot("final")


def run_through_the_workbench(page, lab, shot) -> None:
    """Browse -> Train -> Deploy in notebook 4's Workbench, as a user clicks through it."""
    notebook = open_notebook(page, lab, NOTEBOOK.name, "Workbench(")
    shot("opened")
    run_cells(page, notebook, cells_to_workbench())
    tabs = page.locator(".widget-tab").first
    tabs.wait_for(timeout=180_000)
    browse = tabs.locator(".widget-tab-contents > *:visible").first

    # Browse: filter, tick branches, preview one, compute the specs
    search = browse.locator("input[placeholder^='filter:']")
    search.wait_for(timeout=120_000)
    browse.get_by_text("rows 1–7 of 7").wait_for(timeout=120_000)  # groups folded
    assert not cut_buttons(browse), cut_buttons(browse)
    for pattern, names in (("Jet", BRANCHES[:3]), ("MET_pt", BRANCHES[3:])):
        search.fill(pattern)
        for name in names:
            button = browse.locator(f"{BRANCH_BUTTON}[normalize-space()='{name}']")
            button.locator("xpath=preceding-sibling::*[1]//input[@type='checkbox']").check()
    browse.get_by_text(f"4 picked: {', '.join(BRANCHES)}").wait_for(timeout=30_000)
    search.fill("Jet")
    browse.locator(f"{BRANCH_BUTTON}[normalize-space()='Jet_pt']").click()
    browse.get_by_text("Jet_pt: ").wait_for(timeout=60_000)
    page.wait_for_function(
        "el => [...el.querySelectorAll('img')].some(i => i.complete && i.naturalWidth > 0)",
        arg=browse.element_handle(),
        timeout=30_000,
    )
    shot("browse-picked-and-previewed", tabs)
    browse.locator("button:text-is('Compute specs')").click()
    browse.get_by_text("features from 4 branches").wait_for(timeout=120_000)
    assert not cut_buttons(browse), cut_buttons(browse)
    shot("browse-specs", tabs)

    # Train
    tabs.locator(".lm-TabBar-tab", has_text="2 · Train").click()
    train = tabs.locator(".widget-tab-contents > *:visible").first
    train.get_by_text("4 branches").first.wait_for(timeout=30_000)
    train.locator("button:text-is('Train')").click()
    # progress ("epoch 1/2: batch ...") or, if training was quicker than a poll, its end
    train.get_by_text(re.compile(r"epoch 1/|trained \d+ epoch")).first.wait_for(timeout=180_000)
    shot("training", tabs)
    train.get_by_text("validation AUC").first.wait_for(timeout=300_000)
    train.locator(".mlaas4hep-metrics").wait_for(timeout=30_000)
    assert rendered_images(train) >= 3, "live plot, ROC and scores are not all drawn"
    assert not cut_buttons(train), cut_buttons(train)
    shot("trained", tabs)

    # Deploy: local server, push, the model list, a test prediction
    tabs.locator(".lm-TabBar-tab", has_text="3 · Deploy").click()
    deploy = tabs.locator(".widget-tab-contents > *:visible").first
    deploy.locator("button:text-is('Start local server')").click()
    deploy.get_by_text("local TFaaS server at http://127.0.0.1:").wait_for(timeout=120_000)
    deploy.locator("button:text-is('Push')").click()
    deploy.get_by_text("pushed 'tth'").wait_for(timeout=120_000)
    options = deploy.locator("select option")
    assert options.all_inner_texts() == ["tth"]
    shot("pushed", tabs)
    deploy.locator("button:text-is('Test prediction')").click()
    deploy.get_by_text("max |served − local|").wait_for(timeout=120_000)
    assert rendered_images(deploy) >= 1
    assert not cut_buttons(deploy), cut_buttons(deploy)
    shot("tested", tabs)
    assert not page.get_by_text("Error displaying widget").count()


def test_a_thousand_branches_in_jupyterlab(chromium, lab):
    """Filter changes show, page after page, the rows the kernel holds; nothing is cut."""
    with new_page(chromium) as (page, errors):
        notebook = open_notebook(page, lab, "wide.ipynb", "Browser(PATH")
        run_cells(page, notebook, 2)
        view = notebook.locator(".jp-OutputArea-output").last
        view.get_by_text("rows 1–40 of 55 · page 1 of 2").wait_for(timeout=120_000)
        search = view.locator("input[placeholder^='filter:']")
        expected = {
            "Coll1*_f0*": ("Coll10", 110),
            "*_f17": ("Coll00", 110),
            "Coll42": ("Coll42", 20),
            "nColl07": ("Coll07", 2),
            "Coll0*": ("Coll00", 190),
        }
        for i in range(20):
            pattern = list(expected)[i % len(expected)]
            first, total = expected[pattern]
            search.fill(pattern)
            view.get_by_text(re.compile(rf"^rows 1–\d+ of {total}\b")).wait_for(timeout=30_000)
            group = f"{BRANCH_BUTTON}[starts-with(normalize-space(), '{first} (')]"
            view.locator(group).first.wait_for(timeout=30_000)
        shown = view.evaluate(
            "el => [...el.querySelectorAll('button.mlaas4hep-branch')]"
            ".filter(b => b.offsetParent !== null).map(b => b.textContent.trim())"
        )
        assert shown[0].startswith("Coll00 (")  # the last filter: Coll0*
        assert len(shown) == 40
        notebook.locator(".jp-Cell", has_text="kernel rows:").first.click()
        page.keyboard.press("Escape")
        page.keyboard.press("Shift+Enter")
        printed = notebook.locator(".jp-OutputArea-output", has_text="kernel rows: ")
        printed.wait_for(timeout=30_000)
        assert printed.inner_text().strip() == "kernel rows: " + "|".join(shown)
        assert not cut_buttons(view), cut_buttons(view)
        page.screenshot(path=str(ARTIFACTS / "wide.png"), full_page=True)
        assert not errors, errors
