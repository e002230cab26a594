"""The CLI side of the library's progress callbacks: a bar on a terminal, log lines otherwise.

Library functions take a progress callback and stay quiet; commands draw it here:
:func:`progress_display` for ``progress(done, total, what)`` callbacks (studies, robustness),
:class:`FeatureProgressBar` for the feature runner's events (cases in flight, workers).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

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


class FeatureProgressBar:
    """A rich progress bar on stderr fed by ``radsurv.features.runner.ProgressEvent``.

    The bar shows cases done/total, in flight and failed, the rate, and the workers lost and
    rejoined; worker changes are also printed as lines above the bar.
    """

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = Console(stderr=True)
        self.bar = Progress(
            TextColumn("features"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.task: Any = None

    def __call__(self, event: Any) -> None:
        if event.kind == "start":
            self.task = self.bar.add_task("cases", total=event.total, counts="")
            self.bar.start()
            return
        if self.task is None:
            return
        if event.kind == "end":
            self.bar.stop()
            return
        if event.kind.startswith("worker-"):
            self.bar.console.print(event.describe(), style="yellow" if "lost" in event.kind else "")
        counts = f"{event.in_flight} in flight, {event.failed} failed, {event.rate:.1f} cases/min"
        if event.lost:
            counts += f", workers lost {len(event.lost)}, rejoined {len(event.joined)}"
        self.bar.update(self.task, completed=event.done, counts=counts)


def feature_progress(enabled: bool | None) -> Any:
    """The ``progress`` argument for ``extract_features``: a bar on a terminal, else log lines."""
    if enabled is False or not sys.stderr.isatty():
        return None
    return FeatureProgressBar()
