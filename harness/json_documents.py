"""JSON documents Chameleon prints (``--json``) or writes: strict JSON, where a NaN or an infinity is null.

Python's ``json`` writes ``NaN`` and ``Infinity``, which no strict JSON parser
reads; a figure that could not be computed is ``null`` instead.  Standard library only.
"""

from __future__ import annotations

import math
from typing import Any


def strict_json(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, ±inf) replaced by None, through dicts, lists and tuples."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    return value
