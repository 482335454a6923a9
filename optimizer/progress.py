"""A rich progress bar for long optimizer steps (trainings, layer-table entries, NetAdapt proposals).

Imports rich only when a bar is actually shown.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class ProgressContext:
    """A context whose value is an ``update(done, total)`` callback; no console means no bar (a silent callback)."""

    def __init__(self, console: Any, label: str) -> None:
        self.console, self.label, self.bar = console, label, None

    def __enter__(self) -> Callable[..., None]:
        if self.console is None:
            return lambda *args, **kwargs: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("    {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            TextColumn("ETA"), TimeRemainingColumn(), console=self.console, transient=True)
        task = self.bar.add_task(self.label, total=None)

        def update(done: int, total: int, *_: Any) -> None:
            if not self.bar.live.is_started:
                self.bar.start()
            self.bar.update(task, completed=done, total=total)

        return update

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None and self.bar.live.is_started:
            self.bar.stop()

