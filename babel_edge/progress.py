"""Progress display for long work (rich, on stderr so stdout stays parseable).

Library functions take these context managers rather than printing; the TUI
can swap the sink later without touching the stages.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn, TransferSpeedColumn)

console = Console(stderr=True)


def _quiet() -> bool:
    return os.environ.get("BABEL_EDGE_QUIET") == "1"


@contextlib.contextmanager
def status(message: str) -> Iterator[None]:
    """A spinner with elapsed time for work that has no natural count."""
    if _quiet():
        yield
        return
    with Progress(TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                  transient=not console.is_terminal) as p:
        p.add_task(message, total=None)
        yield
    if not console.is_terminal:
        print(f"{message}: done", file=sys.stderr)


@contextlib.contextmanager
def byte_progress(message: str, total: int) -> Iterator[Callable[[int], None]]:
    if _quiet():
        yield lambda n: None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), TimeRemainingColumn(), console=console) as p:
        task = p.add_task(message, total=total)
        yield lambda n: p.advance(task, n)


@contextlib.contextmanager
def count_progress(message: str, total: int, unit: str = "items",
                   rate_unit: str | None = None) -> Iterator[Callable[..., None]]:
    """A bar over `total` units; the callback is advance(n, **fields) with optional extra text."""
    if _quiet():
        yield lambda n=1, **kw: None
        return
    cols = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn(unit), TimeElapsedColumn(), TimeRemainingColumn(),
            TextColumn("{task.fields[extra]}")]
    with Progress(*cols, console=console) as p:
        task = p.add_task(message, total=total, extra="")

        def advance(n: int = 1, extra: str = "") -> None:
            p.update(task, advance=n, extra=extra)

        yield advance
