"""Which runner runs a device profile: a table of the built-in runners keyed by (transport, runtime).

The built-in runners are named, not imported: each entry is a ``"module:factory"``
string that :func:`make_runner` resolves with :mod:`importlib` only when a
profile needs that runner, so reading LUTs or profiles never loads a runtime.
A factory takes the :class:`~harness.profiles.DeviceProfile` and returns a
:class:`~harness.runners.base.Runner`.

A new built-in runtime is a new module with its runner class and a
``from_profile`` factory, plus one line in :data:`BUILTIN_RUNNERS`.  A runner
defined elsewhere (a third-party class, a test double) is added at run time
with :func:`register`, which takes precedence over the table for its key.
"""

from __future__ import annotations

import importlib
from typing import Callable

from harness.errors import DeviceUnavailable
from harness.profiles import DeviceProfile
from harness.runners.base import Runner

RunnerFactory = Callable[[DeviceProfile], Runner]

# (transport type, runtime name) -> "module:factory", loaded on first use.
BUILTIN_RUNNERS: dict[tuple[str, str], str] = {
    ("adb", "executor_runner"): "harness.runners.android_executorch:from_profile",
    ("adb", "onnxruntime_perf_test"): "harness.runners.android_ort:from_profile",
    ("adb", "tflite"): "harness.runners.android_tflite:from_profile",
    ("local", "executorch"): "harness.runners.executorch_local:from_profile",
    ("local", "litert"): "harness.runners.litert_local:from_profile",
    ("local", "onnxruntime"): "harness.runners.onnxruntime_local:from_profile",
}

# Runners registered at run time with register(); they take precedence over BUILTIN_RUNNERS.
_REGISTRY: dict[tuple[str, str], RunnerFactory] = {}


def register(transport: str, runtime: str, factory: RunnerFactory) -> None:
    """Use ``factory`` for profiles with this transport type and runtime name (replacing any runner for them)."""
    _REGISTRY[(transport, runtime)] = factory


def known_runners() -> list[tuple[str, str]]:
    """Every (transport, runtime) pair that has a runner, built in or registered, sorted."""
    return sorted(set(BUILTIN_RUNNERS) | set(_REGISTRY))


def make_runner(profile: DeviceProfile) -> Runner:
    """The runner for a profile's transport and runtime; raises DeviceUnavailable if there is none here."""
    key = (profile.transport.type, profile.runtime.name)
    factory = _REGISTRY.get(key)
    if factory is None and key in BUILTIN_RUNNERS:
        factory = _load(BUILTIN_RUNNERS[key])
    if factory is None:
        raise DeviceUnavailable(
            f"device {profile.name!r}: no runner for runtime {profile.runtime.name!r} over the "
            f"{profile.transport.type} transport (known: {', '.join(f'{r} over {t}' for t, r in known_runners())})"
        )
    return factory(profile)


def _load(target: str) -> RunnerFactory:
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)
