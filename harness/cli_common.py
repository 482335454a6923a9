"""What every Chameleon command line shares: JSON output and the one-line error contract."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.console import Console

from harness.errors import ChameleonError

stdout = Console(highlight=False)
stderr = Console(stderr=True, highlight=False)


def emit_json(document: Any) -> None:
    """Print exactly one JSON document on stdout (for --json)."""
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")


def run_app(app: typer.Typer) -> None:
    """Run a Typer app; a ChameleonError becomes one line on stderr and its exit code (2)."""
    try:
        app()
    except ChameleonError as problem:
        stderr.print(f"error: {problem}", markup=False, soft_wrap=True)
        sys.exit(problem.exit_code)
