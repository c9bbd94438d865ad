"""Where the reading runs (this kernel or a Dask cluster) and how far each file is read."""

from __future__ import annotations

import html
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["cluster_html", "file_progress_html"]

_MAX_FILES_SHOWN = 12


def __dir__() -> list[str]:
    return __all__


def cluster_html(client: Client | None = None, threads: int = 2) -> str:
    """One line: a Dask cluster with its dashboard link and workers, or the local threads."""
    if client is None:
        return f"<b>Runs on:</b> this kernel ({threads} reader threads)"
    link = getattr(client, "dashboard_link", None)
    workers: int | str
    try:
        workers = len(client.scheduler_info()["workers"])
    except Exception:  # a cluster that went away still gets described
        workers = "?"
    dashboard = (
        f' — <a href="{html.escape(link)}" target="_blank">Dask dashboard</a>' if link else ""
    )
    return (
        f"<b>Runs on:</b> Dask cluster {html.escape(str(client.scheduler.address))}, "
        f"{workers} workers{dashboard}"
    )


def file_progress_html(progress: Mapping[str, tuple[int, int]]) -> str:
    """Per-file progress of the current pass: a small bar per file (the busiest first)."""
    if not progress:
        return ""
    done_files = sum(1 for done, total in progress.values() if done >= total)
    rows = sorted(progress.items(), key=lambda item: (item[1][0] >= item[1][1], -item[1][0]))
    cells = []
    for path, (done, total) in rows[:_MAX_FILES_SHOWN]:
        share = done / total if total else 1.0
        bar = (
            '<div style="background:#e0e0e0;width:8em;height:0.7em;display:inline-block">'
            f'<div style="background:#4caf50;width:{share:.0%};height:100%"></div></div>'
        )
        name = html.escape(os.path.basename(path))
        cells.append(
            f"<tr><td title='{html.escape(path)}'>{name}</td><td>{bar}</td>"
            f"<td>{done:,}/{total:,}</td></tr>"
        )
    more = len(progress) - _MAX_FILES_SHOWN
    tail = f"<tr><td colspan=3>… and {more} more</td></tr>" if more > 0 else ""
    return (
        f"<b>Files:</b> {done_files}/{len(progress)} read this pass"
        f"<table style='font-size:11px'>{''.join(cells)}{tail}</table>"
    )
