"""Options that several ``bench`` command modules share (kept here so each module defines them the same way)."""

from __future__ import annotations

import typer

JsonOption = typer.Option(False, "--json", help="Print one JSON document on stdout instead of tables.")
