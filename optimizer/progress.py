"""Progress of long optimizer steps (trainings, layer-table entries, NetAdapt proposals).

A thin name for :func:`harness.progress_lines.track`: a rich bar on a terminal,
plain timestamped lines (and a heartbeat) when stderr goes to a log.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.progress_lines import track


class ProgressContext:
    """A context whose value is an ``update(done, total)`` callback; no console means nothing shown (a silent callback).

    Extra arguments of the callback (a sweep's signature) are ignored.
    """

    def __init__(self, console: Any, label: str) -> None:
        self.console, self.label = console, label
        self._context: Any = None

    def __enter__(self) -> Callable[..., None]:
        self._context = track(self.label, self.console, indent="    ", transient=True)
        return self._context.__enter__()

    def __exit__(self, *exc: Any) -> Any:
        return self._context.__exit__(*exc)
