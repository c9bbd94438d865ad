"""Model names: which the server accepts (each becomes a folder) and why it refuses others."""

from __future__ import annotations

import re
from typing import TypeGuard

__all__ = ["MAX_NAME_LENGTH", "SERVER_NAME", "check_name", "valid_name"]

MAX_NAME_LENGTH = 128
_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def __dir__() -> list[str]:
    return __all__


def valid_name(name: object) -> TypeGuard[str]:
    """True for names of ``[A-Za-z0-9_.-]`` that do not start with a dot."""
    return (
        isinstance(name, str)
        and 0 < len(name) <= MAX_NAME_LENGTH
        and not name.startswith(".")
        and _NAME.fullmatch(name) is not None
    )


def check_name(name: object) -> str:
    """Return ``name`` if it is a valid model name, else raise ValueError saying why."""
    if not valid_name(name):
        msg = (
            f"invalid model name {name!r}: use 1 to {MAX_NAME_LENGTH} characters of "
            "A-Z a-z 0-9 _ . - not starting with a dot"
        )
        raise ValueError(msg)
    return name


SERVER_NAME = "mlaas4hep_nb"
"""What this package's server calls itself in ``/status`` (``"server"``); upstream says nothing."""
