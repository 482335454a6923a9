"""Where Chameleon finds its data folders and keeps its caches.

The device profiles and sweep plans live in the repository (``device_profiles/``
and ``benchmarks/plans/``), beside the ``harness`` package, so that adding a
phone or a plan is adding a file.  Environment variables point elsewhere when a
user keeps their own.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def profiles_dir() -> Path:
    """Device profiles: ``$CHAMELEON_PROFILES`` or the repository's ``device_profiles/``."""
    return Path(os.environ.get("CHAMELEON_PROFILES", REPO_ROOT / "device_profiles"))


def plans_dir() -> Path:
    """Built-in sweep plans: ``$CHAMELEON_PLANS`` or the repository's ``benchmarks/plans/``."""
    return Path(os.environ.get("CHAMELEON_PLANS", REPO_ROOT / "benchmarks" / "plans"))


def cache_dir() -> Path:
    """Generated models and other re-creatable files: ``$CHAMELEON_CACHE`` or ``~/.cache/chameleon``."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "chameleon"
    return Path(os.environ.get("CHAMELEON_CACHE", default))


def config_dir() -> Path:
    """User settings and keys (the ADB key pair): ``$CHAMELEON_CONFIG`` or ``~/.config/chameleon``."""
    default = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "chameleon"
    return Path(os.environ.get("CHAMELEON_CONFIG", default))
