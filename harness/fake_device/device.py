"""A loopback ADB device: a daemon on 127.0.0.1 that speaks the real ADB wire protocol.

Both ``adb-shell`` (``AdbDeviceTcp("127.0.0.1", port)``) and Google's ``adb``
client (``adb connect 127.0.0.1:PORT``) talk to it as to a phone in ``adb
tcpip`` mode.  Commands run on this machine (``/bin/sh -c``) inside a sandbox
folder that stands for the phone's filesystem; see
:mod:`harness.fake_device.sandbox` for the path mapping and
:mod:`harness.fake_device.protocol` for the wire format.

Implemented:

* CNXN + AUTH: the device sends a 20-byte token; a signature that verifies
  against a public key the device accepted before (``/data/misc/adb/adb_keys``
  in the sandbox) and that is still authorized brings the connection online;
  otherwise it sends a fresh token, and an offered public key is accepted
  and remembered only if it is an authorized key (:mod:`harness.fake_device.keys`:
  where a phone asks its user, this device has a list); any other key gets
  the connection closed.  The banner advertises ``shell_v2`` and
  ``fixed_push_mkdir`` only.
* Streams with ``OKAY`` flow control (one outstanding ``WRTE`` per stream, no
  delayed-ack feature).
* Services: ``shell:CMD`` (v1: stdout and stderr merged, no exit status),
  ``shell,v2,...:CMD`` (shell protocol v2: separate stdout/stderr packets,
  stdin / close-stdin, the exit status), ``exec:CMD`` (raw, output untouched),
  ``sync:`` (STAT, LIST, SEND, RECV, DATA, DONE, OKAY, FAIL, QUIT; v1 only: no
  STA2/LST2/SND2/RCV2).  There is no pseudo-terminal: a ``pty`` request runs
  on pipes like ``raw``; without a command the shell is ``sh -i`` (``sh`` for
  ``raw``), also on pipes.
* Fault injection for reconnect tests: :meth:`LoopbackAdbDevice.drop_connections`,
  :meth:`~LoopbackAdbDevice.drop_after`, :meth:`~LoopbackAdbDevice.drop_next_shell_matching`.
  A drop resets the TCP connections (RST) and kills their commands.

This module is the device itself: :class:`LoopbackAdbDevice` (listening,
authorization keys, fault injection, the simulated sysfs, which service an
OPEN gets) and the ``bench fake-device`` entry point.  The parts it serves
with are :mod:`harness.fake_device.transport` (connections and streams),
:mod:`harness.fake_device.shell` (shell / exec) and
:mod:`harness.fake_device.sync` (push / pull); it imports those, ``protocol``,
``sandbox`` and ``keys`` (which keys are let in), and ``benchmark_model_standin`` lazily.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Self

from harness.fake_device import protocol as P
from harness.fake_device.keys import AuthorizedKeys, check_key_file, default_key_files
from harness.fake_device.sandbox import DEVICE_CPUS, FakeDeviceError, cpufreq_dir, default_identity, map_device_path, populate, prepare_sandbox, thermal_zone_dir, write_text_atomically
from harness.fake_device.shell import ShellService
from harness.fake_device.sync import SyncService
from harness.fake_device.transport import Connection, Stream

FEATURES = ("shell_v2", "fixed_push_mkdir")
LOOPBACK_HOST = "127.0.0.1"


class LoopbackAdbDevice:
    """A fake Android phone on ``127.0.0.1:PORT`` speaking the ADB protocol (see the module docstring).

    ``with LoopbackAdbDevice() as device:`` starts it on a free port; ``device.address`` is
    what ``adb connect`` takes.  The sandbox (a new temporary folder unless given, removed on
    :meth:`stop` only in that case) stands for the phone's filesystem.

    ``authorized_keys``: the public keys let in, as keys files (paths, read again when an
    unknown key knocks, so they may not exist yet) or key blobs (bytes); None: the keys of
    this user's ADB clients (:func:`~harness.fake_device.keys.default_key_files`).
    :meth:`authorize` adds one.  ``log`` receives one line per refused client.
    """

    def __init__(self, host: str = LOOPBACK_HOST, port: int = 0, sandbox: Path | None = None, serial: str | None = None,
                 authorized_keys: Iterable[Path | str | bytes] | None = None, log: Callable[[str], None] | None = None) -> None:
        # Never another interface: a client with a key runs commands on this machine.
        if host != LOOPBACK_HOST:
            raise FakeDeviceError(f"the loopback ADB device only listens on {LOOPBACK_HOST}, not {host!r}")
        if isinstance(port, bool) or not isinstance(port, int):
            raise FakeDeviceError(f"invalid port {port!r}")
        if not 0 <= port <= 65535:
            raise FakeDeviceError(f"port {port} is out of range (0-65535)")
        self.host = host
        self.port = port
        self.authorized = AuthorizedKeys(default_key_files() if authorized_keys is None else authorized_keys)
        self.log = log
        self._own_sandbox = sandbox is None
        self.sandbox = prepare_sandbox(Path(tempfile.mkdtemp(prefix="chameleon-loopback-")) if sandbox is None else Path(sandbox))
        self.serial = serial or f"LOOPBACK{secrets.token_hex(4).upper()}"
        self.identity: dict[str, str] = default_identity(self.serial)
        self.require_auth = True
        try:
            populate(self.sandbox, self.identity)
        except OSError as e:
            raise FakeDeviceError(f"sandbox {self.sandbox}: cannot set up the device's files ({e.strerror or e}: {e.filename})") from None
        # What each AUTH step did: "signature", "bad_signature", "public_key" (accepted), "refused".
        self.auth_events: list[str] = []
        self._keys: list[tuple[int, int]] = []
        self._lock = threading.Lock()
        self._connections: set[Connection] = set()
        self._shell = ShellService(self.sandbox, self.serial)  # shell:, shell,v2,...: and exec:
        self._sync = SyncService(self.sandbox)  # sync:
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._drop_countdown: int | None = None
        self._drop_patterns: list[str] = []
        self.messages_received = 0
        self.connections_accepted = 0
        self._load_keys()

    # ------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        if self._thread is not None:
            return self
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.host, self.port))
        except OSError as e:
            listener.close()
            raise FakeDeviceError(f"cannot listen on {self.host}:{self.port}: {e.strerror or e}") from None
        listener.listen(16)
        listener.settimeout(0.2)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._stopping.clear()
        self._thread = threading.Thread(target=self._accept_loop, name=f"loopback-adb-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._listener is not None:
            try:
                self._listener.close()
            except OSError:
                pass
        self.drop_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._thread = None
        self._listener = None
        self._shell.kill_all()
        if self._own_sandbox:
            shutil.rmtree(self.sandbox, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def banner(self) -> str:
        props = ";".join(f"{name}={self.identity[name]}" for name in ("ro.product.name", "ro.product.model", "ro.product.device"))
        return f"device::{props};features={','.join(FEATURES)}"

    def device_path(self, remote: str) -> Path:
        """The host path that device path ``remote`` maps to (``..`` refused)."""
        return map_device_path(self.sandbox, remote)

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                sock, addr = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Connection(self, sock, f"{addr[0]}:{addr[1]}")
            with self._lock:
                if self._stopping.is_set():
                    sock.close()
                    break
                self._connections.add(conn)
                self.connections_accepted += 1
            conn.start()

    def _forget(self, conn: Connection) -> None:
        with self._lock:
            self._connections.discard(conn)

    # ---------------------------------------------------------- simulation

    def set_temperature_c(self, celsius: float, zone: int = 0) -> None:
        """Set what ``/sys/class/thermal/thermal_zone<zone>/temp`` reads (millidegrees)."""
        folder = thermal_zone_dir(self.sandbox, zone)
        if not folder.is_dir():
            write_text_atomically(folder / "type", f"zone{zone}\n")
        write_text_atomically(folder / "temp", f"{round(float(celsius) * 1000)}\n")

    def set_cpu_freq_khz(self, cpu: int, khz: int) -> None:
        """Set what ``/sys/devices/system/cpu/cpu<cpu>/cpufreq/scaling_cur_freq`` reads."""
        if not 0 <= int(cpu) < DEVICE_CPUS:
            raise FakeDeviceError(f"the loopback device has cpu0..cpu{DEVICE_CPUS - 1}, not cpu{cpu}")
        if int(khz) <= 0:
            raise FakeDeviceError(f"a CPU frequency must be positive, not {khz} kHz")
        folder = cpufreq_dir(self.sandbox, int(cpu))
        for name in ("scaling_cur_freq", "cpuinfo_cur_freq"):
            write_text_atomically(folder / name, f"{int(khz)}\n")

    def taskset_calls(self) -> list[dict]:
        """What the ``taskset`` stand-in recorded: requested mask, device CPUs, host CPUs, command."""
        import json

        log = self.sandbox / ".loopback" / "taskset.jsonl"
        try:
            return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        except OSError:
            return []

    # ------------------------------------------------------------- faults

    def drop_connections(self) -> int:
        """Reset every client connection now (their running commands are killed); returns how many."""
        with self._lock:
            conns = list(self._connections)
        for conn in conns:
            conn.close()
        return len(conns)

    def drop_after(self, n_messages: int) -> None:
        """Drop every connection right after the next ``n_messages`` ADB messages from clients are handled."""
        if int(n_messages) < 1:
            raise FakeDeviceError("drop_after needs at least 1 message")
        with self._lock:
            self._drop_countdown = int(n_messages)

    def drop_next_shell_matching(self, substring: str) -> None:
        """Drop every connection, instead of running it, when a shell/exec command containing ``substring`` is opened (once)."""
        with self._lock:
            self._drop_patterns.append(str(substring))

    def _message_received(self) -> bool:
        with self._lock:
            self.messages_received += 1
            if self._drop_countdown is None:
                return False
            self._drop_countdown -= 1
            if self._drop_countdown > 0:
                return False
            self._drop_countdown = None
            return True

    def _should_drop_for(self, service: str) -> bool:
        if not service.startswith(("shell", "exec:")):
            return False
        command = service.partition(":")[2]
        with self._lock:
            for i, pattern in enumerate(self._drop_patterns):
                if pattern in command:
                    del self._drop_patterns[i]
                    return True
        return False

    # --------------------------------------------------------------- keys

    def _keys_file(self) -> Path:
        return self.sandbox / "data" / "misc" / "adb" / "adb_keys"

    def _load_keys(self) -> None:
        try:
            lines = self._keys_file().read_bytes().splitlines()
        except OSError:
            return
        for line in lines:
            key = P.parse_public_key(line)
            if key is not None and key not in self._keys:
                self._keys.append(key)

    def authorize(self, source: Path | str | bytes) -> None:
        """Let in one more key (bytes) or the keys of a file (a path, read again when an unknown key knocks)."""
        self.authorized.add(source)

    def _signature_known(self, token: bytes, signature: bytes) -> bool:
        with self._lock:
            keys = list(self._keys)
        # A key remembered in the sandbox's adb_keys counts only while it is still authorized.
        ok = any(P.verify_signature(key, token, signature) and self.authorized.allows(key) for key in keys)
        self.auth_events.append("signature" if ok else "bad_signature")
        return ok

    def _accept_key(self, blob: bytes) -> bool:
        """Whether the public key a client offers is let in (and remembered); a phone would ask its user."""
        key = P.parse_public_key(blob)
        if key is None or not self.authorized.allows(key):
            self.auth_events.append("refused")
            if self.log is not None:
                who = blob.split(b"\0", 1)[0].strip().partition(b" ")[2].decode("utf-8", "replace") or "unnamed"
                who = "".join(c if c.isprintable() else "?" for c in who[:80])  # the client's words, on our terminal
                what = "an unreadable public key" if key is None else f"key {P.key_fingerprint(blob)} ({who})"
                self.log(f"refused a client: {what} is not an authorized key (add it with --authorized-keys FILE)")
            return False
        self.auth_events.append("public_key")
        with self._lock:
            if key in self._keys:
                return True
            self._keys.append(key)
        line = blob.split(b"\0", 1)[0].strip()
        path = self._keys_file()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "ab") as f:
                f.write(line + b"\n")
        except OSError:
            pass  # remembered for this run all the same; the client is let in
        return True

    # ------------------------------------------------------------ services

    def _service(self, service: str) -> Callable[[Stream], None] | None:
        if service == "sync:":
            return self._sync.serve
        if service.startswith("exec:"):
            command = service[len("exec:") :]
            return lambda stream: self._shell.raw(stream, command, unmap=False)
        head, colon, command = service.partition(":")
        if not colon:
            return None
        args = head.split(",")
        if args[0] != "shell":
            return None
        if "v2" in args[1:]:
            return lambda stream: self._shell.v2(stream, command, interactive="pty" in args[1:])
        return lambda stream: self._shell.raw(stream, command, unmap=True, interactive="raw" not in args[1:])


def install_standin_tools(device: LoopbackAdbDevice, folder: str = "/data/local/tmp/chameleon") -> None:
    """Put the stand-in ``benchmark_model``, ``onnxruntime_perf_test`` and ``executor_runner`` where the profiles look for them."""
    from harness.fake_device.benchmark_model_standin import (standin_benchmark_model_path, standin_executor_runner_path,
                                                             standin_ort_perf_test_path)

    for tool, standin in (("benchmark_model", standin_benchmark_model_path()), ("onnxruntime_perf_test", standin_ort_perf_test_path()),
                          ("executor_runner", standin_executor_runner_path())):
        target = device.device_path(f"{folder}/{tool}")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(standin, target)
        target.chmod(0o755)


def serve_forever(port: int = 5555, sandbox: Path | None = None, install_tools: bool = False,
                  authorized_keys: Iterable[Path] | None = None) -> int:
    """Run a loopback device on ``127.0.0.1:port`` until Ctrl-C or SIGTERM (the ``bench fake-device`` command).

    There is no host to choose: it listens on 127.0.0.1 only.  ``authorized_keys``: keys files
    that must exist and hold a key (None: the keys of this user's ADB clients).  What it
    exposes is said on stderr before it listens: the keys let in, and a warning when run as root.
    """
    files = None if authorized_keys is None else [check_key_file(Path(path)) for path in authorized_keys]

    def note(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    device = LoopbackAdbDevice(port=port, sandbox=sandbox, authorized_keys=files, log=note)
    try:
        if os.geteuid() == 0:
            note("warning: running as root: a client with an authorized key runs commands on this machine as root")
        note(device.authorized.summary())
        device.start()
        if install_tools:
            install_standin_tools(device)
    except BaseException:
        device.stop()
        raise
    print(f"Loopback ADB device on {device.address} (sandbox {device.sandbox}): adb connect {device.address}; "
          f"bench sweep --device pixel --adb {device.address} --plan smoke; Ctrl-C stops it", flush=True)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        device.stop()
    return 0
