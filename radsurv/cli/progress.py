"""The CLI's drawing of a feature run's progress events (the library only reports them)."""

from __future__ import annotations

import sys
from typing import Any


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
