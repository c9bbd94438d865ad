"""A hook for fault tests: stop a server process at a named step so that a test can kill it there.

``MLAAS4HEP_NB_PAUSE="STEP=FILE"`` (several joined by ``;``), read once when
this module is imported: the first time a process reaches ``STEP`` it
creates ``FILE`` holding its PID and waits while ``FILE`` still holds it (a
test kills the process, or writes anything else into the file to let it go
on). A step whose file exists already runs through, so that a restarted
worker does not stop again. Unset, as in production, `pause` is one lookup
in an empty dict; it is called on uploads only, never per prediction.

Steps (all in `ModelRegistry.install`): ``staged`` (the upload is unpacked and
loaded in its staging folder), ``swap`` (between the two renames: the old
folder is retired, the new one not yet in place), ``swapped`` (the new folder
in place, the old one not yet removed).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

__all__ = ["ENV_PAUSE", "STEPS", "pause"]

ENV_PAUSE = "MLAAS4HEP_NB_PAUSE"
STEPS = ("staged", "swap", "swapped")


def __dir__() -> list[str]:
    return __all__


def _parse(value: str) -> dict[str, Path]:
    pauses = {}
    for item in filter(None, value.split(";")):
        step, _, file = item.partition("=")
        if step not in STEPS or not file:
            msg = f"{ENV_PAUSE}: {item!r} is not STEP=FILE with STEP one of {STEPS}"
            raise ValueError(msg)
        pauses[step] = Path(file)
    return pauses


_PAUSES = _parse(os.environ.get(ENV_PAUSE, ""))


def pause(step: str) -> None:
    """Wait at ``step`` if the environment asked for it (see the module's doc); else return."""
    flag = _PAUSES.get(step)
    if flag is None:
        return
    pid = str(os.getpid())
    try:
        with flag.open("x") as out:
            out.write(pid)
    except FileExistsError:
        return
    while flag.is_file() and flag.read_text() == pid:
        time.sleep(0.02)
