"""Commands on an Android device over ADB, through the ``adb-shell`` library (no ``adb`` binary).

One :class:`AdbTransport` holds one connection, over TCP (``host:port``: a phone
in ``adb tcpip`` mode, or the loopback device) or USB (a serial; needs
``adb-shell[usb]``).  It adds what the library leaves to its caller:

- an RSA key pair created on first use and stored with mode 0600;
- timeouts passed on every call (adb-shell takes them per call);
- reconnection with exponential back-off when the connection drops, and the
  call retried;
- the exit status of shell commands (adb-shell's ``shell`` returns only the
  output: the command is wrapped to print ``$?`` after it);
- pushes skipped when the device already holds the same bytes (md5).

Every value placed in a device command goes through :func:`quote`.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from harness.errors import ChameleonError, DeviceUnavailable
from harness.paths import config_dir


class AdbCommandError(ChameleonError):
    """A device command that exited with a non-zero status when success was required."""


@dataclass(frozen=True)
class ShellResult:
    output: str
    exit_code: int

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def quote(value: object) -> str:
    """Quote one value for the device's ``sh`` (toybox/mksh accept POSIX quoting)."""
    return shlex.quote(str(value))


def command_line(argv: Sequence[object]) -> str:
    """A command line from an argument vector, every element quoted."""
    return " ".join(quote(arg) for arg in argv)


_RC_MARKER = "__chameleon_rc="
_RC_RE = re.compile(r"\n?" + _RC_MARKER + r"(\d+)\s*$")


def wrap_for_exit_code(command: str) -> str:
    """Run ``command`` in a subshell and print its exit status on a line of its own after it."""
    return f"( {command} ); printf '\\n{_RC_MARKER}%s\\n' \"$?\""


def split_exit_code(output: str) -> ShellResult:
    """Separate a wrapped command's output from the status line :func:`wrap_for_exit_code` added."""
    text = output.replace("\r\n", "\n")
    match = _RC_RE.search(text)
    if not match:
        raise DeviceUnavailable("the device's shell did not report the command's exit status (connection cut mid-command?)")
    return ShellResult(output=text[: match.start()], exit_code=int(match.group(1)))


def parse_address(address: str) -> tuple[str, int]:
    """``(host, port)`` of an ADB address ``HOST:PORT`` (``[v6]:PORT`` too); a bad one is a one-line error."""
    host, colon, port = address.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not colon or not host or not (port.isascii() and port.isdigit()):
        raise DeviceUnavailable(f"ADB address {address!r} is not HOST:PORT")
    if not 1 <= int(port) <= 65535:
        raise DeviceUnavailable(f"ADB address {address!r}: port {int(port)} is out of range (1-65535)")
    return host, int(port)


def default_key_path() -> Path:
    return Path(os.environ.get("CHAMELEON_ADB_KEY", config_dir() / "adbkey"))


def ensure_key_pair(path: Path) -> Path:
    """Create the ADB RSA key pair at ``path`` (and ``path.pub``) if absent; the private key is mode 0600."""
    if path.exists():
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
        return path
    from adb_shell.auth.keygen import keygen

    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    previous = os.umask(0o077)  # the key file is never readable by others, not even for an instant
    try:
        keygen(str(path))
    finally:
        os.umask(previous)
    os.chmod(path, 0o600)
    return path


def _fast_checksum(data: bytes | bytearray | str) -> int:
    """ADB's payload checksum (the sum of the bytes, mod 2**32), computed by numpy."""
    import numpy as np

    if isinstance(data, str):
        data = data.encode("utf-8")
    return int(np.frombuffer(data, dtype=np.uint8).sum(dtype=np.uint64)) & 0xFFFFFFFF


_checksum_installed = False


def _install_fast_checksum() -> None:
    """Give adb-shell a faster, identical payload checksum.

    adb-shell sums every payload byte by byte in Python, about 2 ms per 256 KB
    message, which caps a push near 40 MB/s.  The same sum in numpy is about
    50 times faster.  It replaces the library's function only after agreeing
    with it on sample payloads of every type it is called with.
    """
    global _checksum_installed
    if _checksum_installed:
        return
    from adb_shell import adb_message

    original = adb_message.checksum
    probes = [b"", b"OKAY", bytearray(b"\xff" * 300), "sync:", os.urandom(70_000), bytearray(os.urandom(4096))]
    if all(_fast_checksum(p) == original(p) for p in probes):
        adb_message.checksum = _fast_checksum
    _checksum_installed = True


def _tcp_transport(host: str, port: int) -> Any:
    """adb-shell's TCP transport with two fixes: TCP_NODELAY, and end-of-stream as an error.

    - Without TCP_NODELAY (Google's adb sets it), Nagle's algorithm holds back
      the tail of every data message until the previous segment is
      acknowledged: a stall per message that more than halves push throughput.
    - adb-shell takes an empty read (the device closed the connection) as "no
      data yet" and polls again until its read timeout, spinning a core for as
      long as a command may take; a closed connection is reported at once
      instead, so the reconnect logic can act.
    """
    from adb_shell.transport.tcp_transport import TcpTransport

    class DeviceTcpTransport(TcpTransport):
        def connect(self, transport_timeout_s: float | None) -> None:
            super().connect(transport_timeout_s)
            self._connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def bulk_read(self, numbytes: int, transport_timeout_s: float | None) -> bytes:
            data = super().bulk_read(numbytes, transport_timeout_s)
            if not data and numbytes > 0:
                raise ConnectionResetError(f"{host}:{port} closed the connection")
            return data

    return DeviceTcpTransport(host, port)


def _connection_errors() -> tuple[type[BaseException], ...]:
    from adb_shell import exceptions as adb_errors

    return (
        OSError,  # ConnectionResetError, BrokenPipeError, socket errors
        socket.timeout,
        adb_errors.AdbConnectionError,
        adb_errors.AdbTimeoutError,
        adb_errors.TcpTimeoutException,
        adb_errors.InvalidResponseError,
        adb_errors.InvalidCommandError,
    )


class AdbTransport:
    """A reconnecting ADB connection to one device; see the module docstring."""

    def __init__(
        self,
        address: str | None = None,
        serial: str | None = None,
        key_path: Path | None = None,
        connect_timeout_s: float = 10.0,
        command_timeout_s: float = 900.0,
        retries: int = 4,
        backoff_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if bool(address) == bool(serial):
            raise DeviceUnavailable("an ADB device needs either an address (host:port) or a USB serial")
        # Checked here, before any connection: a bad port would otherwise read as "connection refused".
        self._host_port = parse_address(address) if address else None
        self.address, self.serial = address, serial
        self.key_path = key_path or default_key_path()
        self.connect_timeout_s = connect_timeout_s
        self.command_timeout_s = command_timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.sleep = sleep
        self.reconnects = 0
        self._device: Any = None
        self._signer: Any = None

    @property
    def name(self) -> str:
        return self.address or f"usb:{self.serial}"

    # ---------------------------------------------------------- connection
    def connect(self) -> "AdbTransport":
        if self._device is not None:
            return self
        if self._signer is None:
            from adb_shell.auth.sign_pythonrsa import PythonRSASigner

            self._signer = PythonRSASigner.FromRSAKeyPath(str(ensure_key_pair(self.key_path)))
        device = self._new_device()
        try:
            device.connect(rsa_keys=[self._signer], transport_timeout_s=self.connect_timeout_s,
                           auth_timeout_s=self.connect_timeout_s, read_timeout_s=self.connect_timeout_s)
        except _connection_errors() as err:
            device.close()
            raise DeviceUnavailable(f"cannot connect to ADB device {self.name} ({type(err).__name__}: {err})") from None
        self._device = device
        return self

    def _new_device(self) -> Any:
        _install_fast_checksum()
        if self._host_port is not None:
            from adb_shell.adb_device import AdbDevice

            host, port = self._host_port
            return AdbDevice(_tcp_transport(host, port), default_transport_timeout_s=self.connect_timeout_s)
        try:
            from adb_shell.adb_device import AdbDeviceUsb
        except ImportError:
            raise DeviceUnavailable("USB devices need the libusb1 package: pip install 'adb-shell[usb]'") from None
        return AdbDeviceUsb(serial=self.serial, default_transport_timeout_s=self.connect_timeout_s)

    def close(self) -> None:
        if self._device is not None:
            try:
                self._device.close()
            finally:
                self._device = None

    def __enter__(self) -> "AdbTransport":
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, action: Callable[[Any], Any], what: str) -> Any:
        """Run ``action(device)``, reconnecting with back-off and retrying when the connection drops."""
        errors = _connection_errors()
        for attempt in range(self.retries + 1):
            try:
                self.connect()
                return action(self._device)
            except DeviceUnavailable:
                if attempt == self.retries:
                    raise
            except errors as err:
                if attempt == self.retries:
                    raise DeviceUnavailable(
                        f"ADB device {self.name}: {what} failed after {self.retries} reconnects ({type(err).__name__}: {err})"
                    ) from None
            self.close()
            self.reconnects += 1
            self.sleep(min(self.backoff_s * 2 ** attempt, 30.0))
        raise AssertionError("unreachable")

    # ------------------------------------------------------------ commands
    def shell(self, command: str, timeout_s: float | None = None) -> ShellResult:
        """Run a device shell command line (values already quoted) and return its output and exit status."""
        timeout = timeout_s or self.command_timeout_s
        wrapped = wrap_for_exit_code(command)
        output = self._call(
            lambda d: d.shell(wrapped, transport_timeout_s=timeout, read_timeout_s=timeout, timeout_s=timeout),
            f"shell {command[:60]!r}",
        )
        return split_exit_code(output)

    def run(self, argv: Sequence[object], timeout_s: float | None = None, check: bool = True) -> ShellResult:
        """Run an argument vector (each element quoted); with ``check``, a non-zero status is an error."""
        result = self.shell(command_line(argv), timeout_s)
        if check and not result.ok:
            last = result.output.strip().splitlines()[-1:] or [""]
            raise AdbCommandError(f"{self.name}: `{command_line(argv)[:120]}` exited {result.exit_code}: {last[0][:200]}")
        return result

    def getprop(self, name: str) -> str:
        return self.run(["getprop", name]).output.strip()

    def md5(self, remote: str) -> str | None:
        """The md5 of a device file, or None when it does not exist."""
        result = self.shell(f"md5sum {quote(remote)} 2>/dev/null")
        return _md5_of(result.output) if result.ok else None

    def push(self, local: Path, remote: str, executable: bool = False) -> bool:
        """Copy a file to the device unless it already holds the same bytes; returns whether it copied."""
        local = Path(local)
        # One round trip both makes the folder and tells whether the device already has these bytes.
        folder = os.path.dirname(remote) or "/"
        check = self.shell(f"mkdir -p {quote(folder)} && {{ md5sum {quote(remote)} 2>/dev/null || true; }}")
        if not check.ok:
            raise AdbCommandError(f"{self.name}: cannot create {folder} on the device: {check.output.strip()[:200]}")
        device_md5 = _md5_of(check.output)
        if device_md5 is not None and device_md5 == file_md5(local):  # hash locally only when there is something to compare
            return False
        size = local.stat().st_size
        # A generous per-read timeout that grows with the file, so large pushes never time out half-way.
        timeout = self.connect_timeout_s + size / 1e6
        mode = 0o100755 if executable else 0o100644
        self._call(lambda d: d.push(str(local), remote, st_mode=mode, transport_timeout_s=timeout, read_timeout_s=timeout),
                   f"push {local.name}")
        return True

    def pull(self, remote: str, local: Path) -> Path:
        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        timeout = self.command_timeout_s
        self._call(lambda d: d.pull(remote, str(local), transport_timeout_s=timeout, read_timeout_s=timeout), f"pull {remote}")
        return local


def _md5_of(md5sum_output: str) -> str | None:
    fields = md5sum_output.split()
    return fields[0] if fields and re.fullmatch(r"[0-9a-f]{32}", fields[0]) else None


def file_md5(path: Path) -> str:
    return _file_digest(path, "md5")


def file_sha256(path: Path) -> str:
    return _file_digest(path, "sha256")


def _file_digest(path: Path, algorithm: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, algorithm).hexdigest()
