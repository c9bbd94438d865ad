"""Keep TensorFlow's start-up chatter out of notebooks, terminals and demo output.

TensorFlow's C++ libraries print INFO lines while they load (the oneDNN
banner, CPU features), before ``TF_CPP_MIN_LOG_LEVEL`` is read, and in a
notebook its Python logger runs at INFO (``INFO:tensorflow:Assets written
to ...``). Notebooks show both as red stderr boxes, which users read as
errors. Unless the user set ``TF_CPP_MIN_LOG_LEVEL`` themselves, the first
import of TensorFlow after ``import mlaas4hep_nb`` runs with the native
stderr filtered (INFO and WARNING log lines dropped, anything else passed
on), the C++ level set to 2, and the ``tensorflow`` Python logger at WARNING.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator

__all__ = ["quiet_tensorflow_logs"]

LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
# set beside the level when this module chose it, so child processes still count it as unset
_CHOSEN_HERE = "MLAAS4HEP_NB_TF_LOG_LEVEL_CHOSEN"
# absl lines ("I0000 00:00:...") and older TensorFlow's ("2021-03-20 10:51:37.7: I tensorflow/...")
_HEADER = r"^(?:[{0}]\d{{4}} |\d{{4}}-\d\d-\d\d [\d:.]+: [{0}] |WARNING: All log messages)"
_LOG_LINE = re.compile(_HEADER.format("IWEF"))
_DROPPED = re.compile(_HEADER.format("IW"))


def __dir__() -> list[str]:
    return __all__


def without_chatter(text: str) -> str:
    """``text`` without INFO/WARNING log lines and their continuation lines."""
    kept, dropping = [], False
    for line in text.splitlines(keepends=True):
        if _LOG_LINE.match(line):
            dropping = bool(_DROPPED.match(line))
        if not dropping:
            kept.append(line)
    return "".join(kept)


@contextlib.contextmanager
def _native_stderr_filtered() -> Iterator[None]:
    """Send file descriptor 2 to a file meanwhile; pass on what is not chatter."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable stderr: nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            rest = without_chatter(sink.read().decode(errors="replace"))
            if rest:
                sys.stderr.write(rest)


class _QuietLoader(importlib.abc.Loader):
    """TensorFlow's own loader, run with the native stderr filtered."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        module.__loader__ = module.__spec__.loader = self.loader
        with _native_stderr_filtered():
            self.loader.exec_module(module)
        logger = module.get_logger()  # set up now: in notebooks TensorFlow sets it to INFO
        if logger.getEffectiveLevel() < logging.WARNING:
            logger.setLevel(logging.WARNING)


class _QuietFinder(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` once (``import keras`` imports it too) and wraps its loader."""

    def find_spec(self, name, path, target=None):
        if name != "tensorflow":
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def quiet_tensorflow_logs() -> None:
    """Quiet TensorFlow's start-up logs, unless it is loaded or the user chose a level."""
    user_level = LEVEL_VARIABLE in os.environ and _CHOSEN_HERE not in os.environ
    if "tensorflow" in sys.modules or user_level:
        return
    if any(isinstance(finder, _QuietFinder) for finder in sys.meta_path):
        return
    os.environ[LEVEL_VARIABLE] = os.environ[_CHOSEN_HERE] = "2"
    sys.meta_path.insert(0, _QuietFinder())
