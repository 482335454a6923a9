"""Errors a user can cause.

Every one of them carries a single-line message that names the problem; the CLI
prints it and exits with code 2.  Anything else escaping the library is a bug.
"""

from __future__ import annotations


class ChameleonError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class InvalidSignature(ChameleonError):
    """An operator signature that is malformed or describes an impossible op."""


class UnknownDevice(ChameleonError):
    """No device profile by that name."""


class InvalidProfile(ChameleonError):
    """A device profile file that does not validate."""


class InvalidPlan(ChameleonError):
    """A sweep plan that cannot be read or expands to invalid signatures."""


class LutFileError(ChameleonError):
    """A LUT file that is missing, unreadable, corrupt or of another schema."""


class DeviceUnavailable(ChameleonError):
    """The device a profile names cannot be used here (no GPU, no transport yet...)."""


class OutputNotWritable(ChameleonError):
    """An output path we cannot write to."""


class SweepLocked(ChameleonError):
    """Another sweep is writing the same LUT file."""


class InvalidModelFile(ChameleonError):
    """A model file (a whole network to time) that is missing, unreadable or cannot be fed."""
