"""The loopback Ray cluster of the farm tests: it lives in :mod:`harness.farm.loopback` (benchmarks and demos use it too)."""

from harness.farm.loopback import RAY_ENV, LoopbackRayCluster, free_port

__all__ = ["RAY_ENV", "LoopbackRayCluster", "free_port"]
