"""Options and checks that several command modules (of ``bench`` and ``optimize``) share, so each defines them the same way."""

from __future__ import annotations

import typer

JsonOption = typer.Option(False, "--json", help="Print one JSON document on stdout instead of tables.")

#: The largest seed any command takes: what every library seeded downstream (NumPy, PyTorch, SciPy's Sobol) accepts.
SEED_MAX = 2**32 - 1


def finite(value: float | None) -> float | None:
    """A Typer callback refusing NaN and infinities, which ``min=``/``max=`` let through (NaN compares false)."""
    import math

    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"must be a finite number, got {value}")
    return value
