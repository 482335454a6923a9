"""The numbers an energy measurement accepts, checked before anything is set up or read.

A typo here costs a lab session's set-up (a minute) before it fails, or
worse, a figure that looks right: ``--idle-s nan`` sleeps for nothing,
``--idle-s -5`` takes the baseline from nowhere, ``--runs 1e23`` divides the
energy to zero.  So every such number is checked first, against a range a
measurement can have, and refused in one line that names the option.
"""

from __future__ import annotations

import math
import numbers

from harness.errors import ChameleonError

MAX_RUNS = 10_000_000  # ChamNet runs 1000; ten million 1-ms runs is already three hours of capture
MAX_ITEMS = 10_000_000  # --limit: far beyond any plan, small enough to be a count and not a typo
MAX_IDLE_S = 3600.0  # ChamNet idles 18 s; an hour of idle per item is already a mistake
MAX_MEASURE_S = 3600.0  # `bench energy measure`: an hour of running one op between two counter readings
MAX_RATE_HZ = 1e9  # a Monsoon samples at 5 kHz; no power monitor's CSV comes near a gigahertz


class InvalidEnergySetting(ChameleonError):
    """A number given to an energy measurement that no measurement can have (NaN, negative, absurdly large)."""


def check_number(name: str, value: float | None, low: float, high: float, *, above_low: bool = False,
                 unit: str = "", hint: str = "") -> float | None:
    """``value`` when it is finite and within [low, high] (``above_low``: strictly above ``low``); None passes.

    ``name`` is what the user typed (``--idle-s``), so the refusal names it.
    """
    if value is None:
        return None
    finite = isinstance(value, numbers.Integral) or math.isfinite(value)  # NaN fails every comparison: test it first
    if not (finite and (value > low if above_low else value >= low) and value <= high):
        lower = f"above {low:g}" if above_low else f"from {low:g}"
        upper = f" to {high:g}" if math.isfinite(high) else ""
        shown = value if isinstance(value, numbers.Integral) else f"{value:g}"
        raise InvalidEnergySetting(f"{name} {shown}: not a usable value; give a finite number {lower}{upper}{unit}"
                                   + (f" ({hint})" if hint else ""))
    return value


def check_count(name: str, value: int | None, high: int, *, hint: str = "") -> int | None:
    """``value`` when it is a whole number from 1 to ``high``; None passes."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 1 <= value <= high:
        raise InvalidEnergySetting(f"{name} {value}: not a usable count; give a whole number from 1 to {high}"
                                   + (f" ({hint})" if hint else ""))
    return value
