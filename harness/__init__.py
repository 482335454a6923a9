"""Chameleon's measuring half: operator signatures, single-op models, runners, LUTs."""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("chameleon")
except PackageNotFoundError:  # running from a checkout without an install
    __version__ = "0.0.0+checkout"
