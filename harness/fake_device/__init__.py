"""A loopback ADB device for tests and demos: the real ADB wire protocol on 127.0.0.1.

``LoopbackAdbDevice`` answers ``adb-shell`` and Google's ``adb`` client like a
phone in ``adb tcpip`` mode; commands run on this machine inside a sandbox
folder standing for the phone's filesystem, with stand-ins for ``getprop``,
``taskset`` and (pushed by the user) ``benchmark_model``.  It listens on
127.0.0.1 only and lets in only authorized keys (:mod:`harness.fake_device.keys`):
a client it lets in runs commands on this machine as the user who started it.
"""

from harness.fake_device.benchmark_model_standin import (standin_benchmark_model_path, standin_executor_runner_path,
                                                         standin_ort_perf_test_path)
from harness.fake_device.device import FEATURES, LoopbackAdbDevice, serve_forever
from harness.fake_device.keys import default_key_files
from harness.fake_device.sandbox import FakeDeviceError, PathEscape

__all__ = ["FEATURES", "FakeDeviceError", "LoopbackAdbDevice", "PathEscape", "default_key_files", "serve_forever", "standin_benchmark_model_path", "standin_executor_runner_path",
           "standin_ort_perf_test_path"]
