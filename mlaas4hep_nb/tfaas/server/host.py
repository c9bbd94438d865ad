"""The host's memory and CPU use, in the shapes upstream TFaaS's ``/status`` gives them.

Upstream (gopsutil) reports ``Memory: {Virtual, Swap}``, each ``{total, free,
used, usedPercent}`` in bytes and per cent, and ``CPU``: the per-core busy
percentages. Here they come from psutil; the CPU figures cover the time since
the previous ``/status``, or since the server started (upstream samples one
millisecond).
"""

from __future__ import annotations

import psutil  # imported with the server: the first CPU figures count from then

__all__ = ["host_status"]


def __dir__() -> list[str]:
    return __all__


def _memory(stats) -> dict:
    total = int(stats.total)
    used = int(stats.used)
    return {
        "total": total,
        "free": int(stats.free),
        "used": used,
        "usedPercent": 100.0 * used / total if total else 0.0,
    }


def host_status() -> dict:
    """``{"Memory": {"Virtual": ..., "Swap": ...}, "CPU": [...]}`` as upstream's ``/status``."""
    return {
        "Memory": {
            "Virtual": _memory(psutil.virtual_memory()),
            "Swap": _memory(psutil.swap_memory()),
        },
        "CPU": psutil.cpu_percent(interval=None, percpu=True),
    }
