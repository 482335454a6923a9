"""What runs a model: one small class per runtime, registered by (transport, runtime).

A new runtime is a new module with a class and one ``register`` call; a new
phone is a new profile.  The sweep only sees the :class:`Runner` protocol.
"""

from harness.runners.base import DeviceIdentity, Runner, make_runner, register

__all__ = ["DeviceIdentity", "Runner", "make_runner", "register"]
