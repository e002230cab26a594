"""The CLI side of the library's progress callbacks: a bar on a terminal, log lines otherwise.

Library functions take ``progress(done, total, what)`` and stay quiet; commands draw it here.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

ProgressCallback = Callable[[int, int, str], None]
log = logging.getLogger("radsurv.cli")


@contextmanager
def progress_display(label: str, enabled: bool | None = None) -> Iterator[ProgressCallback]:
    """Yield a progress callback for a command.

    ``enabled`` True/False forces the bar on/off; None draws it only on a terminal. Without a
    bar, a log line is written at every tenth of each phase (``what``) and at its end, so a
    long run in a log file or a batch job still shows that it advances.
    """
    if enabled is True or (enabled is None and sys.stderr.isatty()):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        bar = Progress(
            TextColumn(label), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.description}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=Console(stderr=True), transient=True,
        )  # fmt: skip
        tasks: dict[str, int] = {}

        def update(done: int, total: int, what: str) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=total)
            bar.update(tasks[what], completed=done, total=total, description=what)

        with bar:
            yield update
        return

    last: dict[str, int] = {}

    def log_line(done: int, total: int, what: str) -> None:
        step = max(1, total // 10)
        tenth = done // step
        if done == total or tenth > last.get(what, 0):
            last[what] = tenth
            log.info("%s: %s %d/%d", label, what, done, total)

    yield log_line
