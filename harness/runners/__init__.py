"""What runs a model: one small class per runtime, picked by (transport, runtime).

A new runtime is a new module with a class (and a ``from_profile`` factory)
plus one line in the table of :mod:`harness.runners.registry`; a runner
defined outside the harness is added at run time with :func:`register`.  A new
phone is a new profile.  The sweep only sees the :class:`Runner` protocol.
"""

from harness.runners.base import DeviceIdentity, Runner
from harness.runners.registry import make_runner, register

__all__ = ["DeviceIdentity", "Runner", "make_runner", "register"]
