"""MLaaS4HEP's workflow recipe, run unchanged: ``mlaas4hep-nb workflow --files=files.txt ...``.

Upstream MLaaS4HEP (vkuznet/MLaaS4HEP, ``doc/workflow_recipe.md``) trains with::

    workflow.py --files=files.txt --labels=labels.txt --model=keras_model.py --params=params.json

``files.txt`` lists ROOT files (one a line, ``#`` comments, relative paths from
the current directory), ``labels.txt`` gives one class per file (``1`` then
``0``), ``keras_model.py`` defines ``model(idim)`` and ``params.json`` holds
MLaaS4HEP's parameters (`load_mlaas_params`). ``--files`` and ``--labels`` may
also be comma-separated lists, and ``--labels`` the name of the branch that
holds the class. The job runs the code path of ``mlaas4hep-nb train``:
`train_from_params` builds the `DataStream` and the `Trainer` and fits,
`report_training` evaluates, saves the model and writes the TFaaS bundle.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import EmptyDataError, SchemaError, SourceError
from .mlaas_params import MLaaSParams, ParamsError, load_mlaas_params

if TYPE_CHECKING:
    from ..data.spec import FeatureSpec
    from .trainer import Trainer

__all__ = [
    "Recipe",
    "WorkflowError",
    "add_workflow_parser",
    "cli_errors",
    "model_path",
    "read_recipe",
    "read_specs",
    "report_training",
    "save_model",
    "train_from_params",
]

PROG = "mlaas4hep-nb"
# the inputs of upstream's MetaDataGenerator (and their compressed forms): not ROOT
_OTHER_FORMATS = (".json", ".csv", ".parquet", ".avro", ".json.gz", ".csv.gz", ".json.bz2")
_UPSTREAM_SPECS_KEYS = {"jdim", "minv", "maxv", "fkeys", "jkeys"}
_SAVE_SUFFIXES = (".keras", ".h5", ".hdf5")


def __dir__() -> list[str]:
    return __all__


class WorkflowError(ParamsError):
    """A recipe input (files.txt, labels.txt, a flag) that cannot be used; names the file."""


@dataclass(frozen=True)
class Recipe:
    """What ``--files`` and ``--labels`` ask for, as `DataStream` sources.

    Attributes
    ----------
    sources : ``{class: [files]}`` (classes 0..K-1), or a list of files when
        ``label`` names the branch that holds the class.
    label : the label branch, or None.
    summary : one line saying which file has which class.
    """

    sources: dict[int, list[str]] | list[str]
    label: str | None
    summary: str


# --- the recipe's inputs --------------------------------------------------------------


def _is_root_file(path: str) -> bool:
    try:
        with open(path, "rb") as stream:
            return stream.read(4) == b"root"
    except OSError:
        return False


def _entries(value: str, flag: str) -> tuple[list[tuple[str, str]], str]:
    """(place, entry) pairs of a text file (one a line, ``#`` comments) or a comma list."""
    if Path(value).is_file() and not _is_root_file(value):
        try:
            lines = Path(value).read_text().splitlines()
        except UnicodeDecodeError:
            msg = f"{value} is not a text file ({flag} takes a file of one entry a line)"
            raise WorkflowError(msg) from None
        entries = [
            (f"{value} line {number}", line.strip())
            for number, line in enumerate(lines, 1)
            if line.strip() and not line.lstrip().startswith("#")
        ]
        if not entries:
            msg = f"{value} lists nothing ({flag} takes a file of one entry a line)"
            raise WorkflowError(msg)
        return entries, value
    items = [item.strip() for item in value.split(",")]
    return [(flag, item) for item in items if item], flag


def _check_file(place: str, path: str, redirector: str | None) -> None:
    from ..data.paths import is_remote

    lower = path.lower()
    for ext in _OTHER_FORMATS:
        if lower.endswith(ext):
            msg = (
                f"{place}: {path} is {ext.lstrip('.').split('.')[0].upper()} data; "
                f"{PROG} reads ROOT files only (TTree, RNTuple): convert it to ROOT, or use "
                "upstream MLaaS4HEP for its JSON/CSV/Parquet/Avro readers"
            )
            raise WorkflowError(msg)
    remote = is_remote(path) or (bool(redirector) and path.startswith("/store/"))
    if remote or set("*?[") & set(path):
        return  # DataStream reaches URLs and expands globs, naming what fails
    if not os.path.exists(os.path.expanduser(path)):
        msg = f"{place}: ROOT file {path} not found"
        if not Path(path).is_absolute():
            msg += f" (relative paths are read from the current directory {Path.cwd()})"
        raise WorkflowError(msg)


def _classes(labels: list[tuple[str, str]], where: str) -> list[int]:
    classes = []
    for place, text in labels:
        try:
            classes.append(int(text))
        except ValueError:
            msg = (
                f"{place}: label {text!r} is not an integer; labels are the classes 0..K-1, "
                "one per file (e.g. 1 for signal, 0 for background)"
            )
            raise WorkflowError(msg) from None
    if sorted(set(classes)) != list(range(len(set(classes)))):
        msg = (
            f"{where}: the labels {sorted(set(classes))} are not the classes 0..K-1; "
            "number the classes from 0 (e.g. 1 for signal, 0 for background)"
        )
        raise WorkflowError(msg)
    return classes


def read_recipe(files: str, labels: str, redirector: str | None = None) -> Recipe:
    """Read ``--files`` and ``--labels`` as MLaaS4HEP's ``workflow.py`` does.

    Parameters
    ----------
    files : a text file of paths (one a line, ``#`` comments; relative to the
        current directory) or a comma-separated list of paths.
    labels : a text file of one label per file, a comma-separated list of
        labels, or the name of the branch that holds the class.
    redirector : the prefix of ``/store/...`` names (params' ``redirector``).

    Raises
    ------
    WorkflowError
        A missing or non-ROOT file, a label that is no class 0..K-1, or as many
        labels as files not given; the message names the file and line.
    """
    if not files:
        msg = "give --files: a text file of ROOT files (one a line) or a comma-separated list"
        raise WorkflowError(msg)
    if not labels:
        msg = (
            "give --labels: a text file of one label per file, a comma-separated list, "
            "or the name of the branch that holds the class"
        )
        raise WorkflowError(msg)
    paths, files_from = _entries(files, "--files")
    for place, path in paths:
        _check_file(place, path, redirector)
    names = [path for _, path in paths]
    if not Path(labels).is_file() and "," not in labels:
        summary = f"{len(names)} file(s) from {files_from}, class from the branch {labels!r}"
        return Recipe(names, labels.strip(), summary)
    entries, labels_from = _entries(labels, "--labels")
    if len(entries) != len(names):
        msg = (
            f"{labels_from} gives {len(entries)} label(s) for the {len(names)} file(s) of "
            f"{files_from}: give one label per file, in the same order"
        )
        raise WorkflowError(msg)
    classes = _classes(entries, labels_from)
    sources: dict[int, list[str]] = {k: [] for k in sorted(set(classes))}
    for path, k in zip(names, classes, strict=True):
        sources[k].append(path)
    shown = ", ".join(f"{Path(p).name} -> {k}" for p, k in zip(names, classes, strict=True))
    summary = f"{len(names)} file(s) from {files_from}, classes from {labels_from}: {shown}"
    return Recipe(sources, None, summary)


def read_specs(path: str | os.PathLike) -> FeatureSpec:
    """This package's FeatureSpec JSON (``mlaas4hep-nb specs --out``); upstream's is refused.

    Raises
    ------
    WorkflowError
        No such file, not JSON, MLaaS4HEP's own specs format (``jdim``, ``minv``,
        ``maxv``...), or not a FeatureSpec.
    """
    from ..data.spec import FeatureSpec

    make = f"write one with '{PROG} specs FILES --out spec.json', or drop --specs"
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        msg = f"specs file {path} not found"
        raise WorkflowError(msg) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        msg = f"specs file {path} is not JSON ({err})"
        raise WorkflowError(msg) from None
    if isinstance(data, dict) and _UPSTREAM_SPECS_KEYS & set(data):
        msg = (
            f"{path} is an MLaaS4HEP specs file (jdim, minv, maxv...); {PROG} reads its own "
            f"FeatureSpec and computes it in one pass when --specs is not given: {make}"
        )
        raise WorkflowError(msg)
    try:
        return FeatureSpec.from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        msg = f"{path} is not a FeatureSpec ({type(err).__name__}: {err}); {make}"
        raise WorkflowError(msg) from None


def _refuse_other_inputs(preproc: str | None, dtype: str | None) -> None:
    if preproc:
        msg = (
            f"--preproc={preproc}: preprocessing functions apply to MLaaS4HEP's JSON/CSV/"
            f"Parquet/Avro inputs, and {PROG} reads ROOT files only; drop --preproc (choose "
            "branches with selected_branches/exclude_branches in params.json)"
        )
        raise WorkflowError(msg)
    if dtype and dtype.lower() != "root":
        msg = (
            f"--dtype={dtype}: {PROG} reads ROOT files only (TTree, RNTuple); drop --dtype "
            "or give --dtype=root, and convert other data to ROOT"
        )
        raise WorkflowError(msg)


def _params(path: str | None) -> MLaaSParams:
    # upstream's default: params.json when it exists, else its defaults
    if path is None:
        if not Path("params.json").is_file():
            print("no params.json in the current directory: default parameters")
            return MLaaSParams()
        path = "params.json"
    return load_mlaas_params(path)


def model_path(fout: str | os.PathLike) -> tuple[Path, str]:
    """Where ``--fout`` saves the model, and a note when the name was changed.

    Keras 3 writes ``.keras`` (its format) and ``.h5``/``.hdf5`` (legacy HDF5);
    another name (Keras 2 wrote a SavedModel folder for ``--fout=model``) gets
    ``.keras`` appended.
    """
    path = Path(fout)
    if path.suffix.lower() in _SAVE_SUFFIXES:
        return path, ""
    written = path.with_name(path.name + ".keras")
    note = (
        f" (--fout={fout}: Keras 3 writes .keras or .h5 files, so .keras was added; "
        "the TFaaS bundle holds the SavedModel)"
    )
    return written, note


# --- the training job, shared with `mlaas4hep-nb train` -------------------------------


def train_from_params(
    sources: Any,
    params: MLaaSParams,
    *,
    label: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    epochs: int | None = None,
    model: Any = None,
    specs: FeatureSpec | None = None,
) -> Trainer:
    """Build the `DataStream` and the `Trainer` from MLaaS4HEP parameters, then fit.

    Parameters
    ----------
    sources : ``{class: files}`` or files (with ``label``), as for `DataStream`.
    params : the MLaaS4HEP parameters (`load_mlaas_params`).
    label : the branch holding the class, when ``sources`` is not a dict.
    overrides : `DataStream` arguments given on the command line; they win over ``params``.
    epochs : wins over ``params``' ``epochs`` (default 5).
    model : as for `Trainer` (None, a ``model(idim)`` function or a file).
    specs : a FeatureSpec to use instead of computing one.

    Returns
    -------
    The fitted `Trainer`; its stream is closed by `report_training`.
    """
    from ..data.stream import DataStream
    from .trainer import Trainer

    stream_args = {**params.stream, **(overrides or {})}
    if label is not None:
        stream_args["label"] = label
    if specs is not None:
        stream_args["specs"] = specs
    stream = DataStream(sources, **stream_args)
    try:
        print(stream)
        trainer = Trainer(
            stream,
            model=model,
            epochs=epochs or params.trainer.get("epochs", 5),
            max_events=params.trainer.get("max_events"),
        )
        trainer.fit(live_plot=True, progress=stream_args.get("progress", True))
    except BaseException:
        stream.close()
        raise
    return trainer


def save_model(trainer: Trainer, path: str | os.PathLike) -> Path:
    """Write the trained Keras model to a ``.keras`` file (or ``.h5``, Keras's legacy format)."""
    path = Path(path)
    if path.suffix.lower() not in (".h5", ".hdf5"):
        return trainer.save(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)  # Keras logs that HDF5 is legacy: the user asked for it
    try:
        trainer.model.save(path)
    finally:
        absl.setLevel(level)
    return path


def report_training(
    trainer: Trainer,
    *,
    save: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    name: str | None = None,
    note: str = "",
) -> dict:
    """Evaluate on the validation split and print it; save the model; write the TFaaS bundle.

    Returns
    -------
    `Trainer.evaluate`'s result.
    """
    try:
        result = trainer.evaluate()
        print(f"validation AUC {result['auc']:.4f}, accuracy {result['accuracy']:.4f}")
        if save:
            print(f"saved {save_model(trainer, save)}{note}")
        if out:
            print(f"wrote the TFaaS bundle {trainer.export(out, name=name)}")
    finally:
        trainer.stream.close()
    return result


def check_save_path(save: str | os.PathLike | None) -> None:
    """Refuse a model file name Keras 3 cannot write, before training rather than after."""
    if save and Path(save).suffix.lower() not in _SAVE_SUFFIXES:
        msg = f"--save {save}: Keras 3 saves models to .keras (or legacy .h5) files"
        raise ParamsError(msg)


# --- the command line -----------------------------------------------------------------


def _expected(err: BaseException) -> bool:
    if isinstance(err, (ParamsError, FileNotFoundError, SourceError, SchemaError, EmptyDataError)):
        return True
    if isinstance(err, ValueError):
        from .models import ModelError  # imports Keras: only once a ValueError is raised

        return isinstance(err, ModelError)
    return False


@contextlib.contextmanager
def cli_errors() -> Iterator[None]:
    """Turn bad input into one ``mlaas4hep-nb: error: ...`` line and exit status 2."""
    try:
        yield
    except Exception as err:
        if not _expected(err):
            raise
        print(f"{PROG}: error: {' '.join(str(err).split())}", file=sys.stderr)
        raise SystemExit(2) from None


def _cmd_workflow(args: argparse.Namespace) -> None:
    with cli_errors():
        _refuse_other_inputs(args.preproc, args.dtype)
        params = _params(args.params)
        recipe = read_recipe(args.files, args.labels, params.stream.get("redirector"))
        specs = read_specs(args.specs) if args.specs else None
        if args.model and not Path(args.model).is_file():
            msg = f"model file {args.model} not found"
            raise WorkflowError(msg)
        fout, note = model_path(args.fout) if args.fout else (None, "")
        out = args.out or (fout.with_suffix("") if fout else None)
        print(recipe.summary)
        if not args.model:
            print("no --model: training the built-in MLP")
        trainer = train_from_params(
            recipe.sources, params, label=recipe.label, model=args.model, specs=specs
        )
        name = re.sub(r"\W", "_", Path(out).name) if out else None
        report_training(trainer, save=fout, out=out, name=name, note=note)
        if not fout and not out:
            print("nothing saved: give --fout=model.keras (and --out DIR for the TFaaS bundle)")


def add_workflow_parser(sub: Any) -> None:
    """Register ``workflow``, with the flags of MLaaS4HEP's ``workflow.py``."""
    p = sub.add_parser(
        "workflow",
        help="MLaaS4HEP's recipe: --files=files.txt --labels=labels.txt --model --params",
        description=(
            "Train as MLaaS4HEP's workflow.py does, with its flags: ROOT files and one label "
            "per file (or a label branch), a model(idim) file and MLaaS4HEP's params.json."
        ),
    )
    p.add_argument(
        "--files", default="", help="a file of ROOT files (one a line) or a comma-separated list"
    )
    p.add_argument(
        "--labels",
        default="",
        help="a file of one label per file, a comma-separated list, or the label branch",
    )
    p.add_argument("--model", help="a .py file defining model(idim); default: the built-in MLP")
    p.add_argument("--params", help="MLaaS4HEP parameters (default: params.json when it exists)")
    p.add_argument("--specs", help=f"a FeatureSpec JSON ({PROG} specs --out)")
    p.add_argument("--preproc", help="not supported: for MLaaS4HEP's non-ROOT inputs")
    p.add_argument("--dtype", help="root (the only data type read here)")
    p.add_argument("--fout", help="save the trained model here (.keras, or .h5)")
    p.add_argument(
        "--out", help="write the TFaaS bundle here (default: next to --fout, named after it)"
    )
    p.set_defaults(run=_cmd_workflow)
