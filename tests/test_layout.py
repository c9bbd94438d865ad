"""The package's layers point one way, data → train → serve, with views on top."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mlaas4hep_nb"
# layers, lowest first; a module may import its own layer and those below it
LAYERS = {
    "base": ("errors", "bundle", "tensorflow_logs", "xrootd_loader", "_compat"),
    "data": ("data", "dask"),
    "plotting": ("plot", "liveplot"),  # imported by the calls that plot, never at import time
    "train": ("train",),
    "serve": ("tfaas",),
    "views": ("widgets", "cli", "datasets"),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The package's modules that ``path`` imports anywhere: lazy and TYPE_CHECKING imports too."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            target = ".".join([*base, *([node.module] if node.module else [])])
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                found.add(candidate if _exists(candidate) else target)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mlaas4hep_nb"):
            found.add(node.module)
    return {m for m in found if m != "mlaas4hep_nb"}  # `from .. import __version__`


def _exists(module: str) -> bool:
    path = PACKAGE.parent.joinpath(*module.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py")}


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    for rank, (_, tops) in enumerate(LAYERS.items()):
        if top in tops:
            return rank
    pytest.fail(f"{module} is in no layer of tests/test_layout.py: place it")


def _layer_name(module: str) -> str | None:
    """The layer of one of the package's modules; None for others and the package itself."""
    if not module.startswith("mlaas4hep_nb."):
        return None
    return list(LAYERS)[_layer(module)]


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                cycle = [*stack[stack.index(target) :], target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_every_import_points_down_the_layers():
    upward = [
        f"{module} ({_layer_name(module)}) imports {target} ({_layer_name(target)})"
        for module, targets in sorted(_graph().items())
        if module != "mlaas4hep_nb"
        for target in sorted(targets)
        if _layer(target) > _layer(module)
    ]
    assert not upward, "\n".join(upward)


def _in_fresh_python(code: str, *args: str) -> Any:
    """What ``code`` prints as its last line, as JSON, run by a fresh interpreter."""
    run = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
    )
    return json.loads(run.stdout.splitlines()[-1])


def _loaded_after_importing(modules: list[str]) -> set[str]:
    code = (
        "import importlib, json, sys\n"
        "for name in sys.argv[1:]: importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    return set(_in_fresh_python(code, *modules))


def test_data_layer_imports_neither_tensorflow_nor_matplotlib():
    data = sorted(_module_name(p) for p in (PACKAGE / "data").rglob("*.py") if p.name != "tf.py")
    loaded = _loaded_after_importing([*data, "mlaas4hep_nb.dask"])
    heavy = sorted(m for m in loaded if m.split(".")[0] in ("tensorflow", "keras", "matplotlib"))
    assert not heavy, f"the data layer imported {heavy[:5]}"
    ours = sorted(m for m in loaded if _layer_name(m) not in (None, "base", "data"))
    assert not ours, f"the data layer imported {ours}"


def test_training_layer_imports_no_plotting_and_no_views():
    train = sorted(_module_name(p) for p in (PACKAGE / "train").rglob("*.py"))
    loaded = _loaded_after_importing(train)
    ours = sorted(m for m in loaded if _layer_name(m) in ("plotting", "serve", "views"))
    assert not ours, f"the training layer imported {ours}"


def test_front_door_lists_every_public_name_and_each_resolves():
    import mlaas4hep_nb as mn

    code = (
        "import json, mlaas4hep_nb as mn\n"
        "print(json.dumps({n: type(getattr(mn, n)).__name__ for n in mn.__all__}))"
    )
    kinds = _in_fresh_python(code)
    assert set(mn.__all__) == {*mn._EXPORTS, *mn._SUBMODULES, "__version__"}
    assert kinds["DataStream"] == kinds["Trainer"] == "type"
    assert kinds["tfaas"] == kinds["widgets"] == "module"
