"""What every Chameleon command line shares: JSON output and the one-line error contract."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer

from harness.console import stderr, stdout
from harness.errors import ChameleonError
from harness.json_documents import strict_json

__all__ = ["emit_json", "run_app", "sigterm_as_ctrl_c", "stderr", "stdout"]


def emit_json(document: Any) -> None:
    """Print exactly one strict JSON document on stdout (for --json): a NaN or infinity becomes null."""
    sys.stdout.write(json.dumps(strict_json(document), indent=2, default=str, allow_nan=False) + "\n")


def run_app(app: typer.Typer) -> None:
    """Run a Typer app; a ChameleonError becomes one line on stderr and its exit code (2)."""
    try:
        app()
    except ChameleonError as problem:
        stderr.print(f"error: {problem}", markup=False, soft_wrap=True)
        sys.exit(problem.exit_code)


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextmanager
def sigterm_as_ctrl_c(interrupted: str | None = None) -> Iterator[None]:
    """SIGTERM stops the block the way Ctrl-C does (a KeyboardInterrupt), so what finished is kept either way.

    With ``interrupted``, an interrupt prints that line on stderr and exits
    130; without, the KeyboardInterrupt goes on to the caller (a sweep
    catches it itself and reports what it kept).
    """
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        yield
    except KeyboardInterrupt:
        if interrupted is None:
            raise
        stderr.print(interrupted, soft_wrap=True)
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
