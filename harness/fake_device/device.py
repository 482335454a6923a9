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
  in the sandbox) brings the connection online; otherwise it sends a fresh
  token, and an offered public key is always accepted (a user who always taps
  "Allow") and remembered.  The banner advertises ``shell_v2`` and
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
"""

from __future__ import annotations

import os
import queue
import secrets
import shutil
import signal
import socket
import stat
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

from harness.fake_device import protocol as P
from harness.fake_device.sandbox import DEVICE_CPUS, FakeDeviceError, OutputUnmapper, PathEscape, check_sandbox_path, cpufreq_dir, default_identity, map_device_path, populate, rewrite_command, thermal_zone_dir, write_text_atomically

FEATURES = ("shell_v2", "fixed_push_mkdir")
LOOPBACK_HOST = "127.0.0.1"


class _Closed(Exception):
    """The stream or the connection went away."""


# ------------------------------------------------------------------ streams


class _Stream:
    """One ADB stream on a connection: outgoing WRTEs gated by the peer's OKAYs, incoming data queued."""

    def __init__(self, conn: _Connection, local_id: int, remote_id: int) -> None:
        self.conn = conn
        self.local_id = local_id
        self.remote_id = remote_id
        self.can_write = threading.Event()
        self.can_write.set()
        self.inbox: queue.Queue[bytes | None] = queue.Queue()
        self.closed = False
        self._lock = threading.Lock()
        self.on_abort: Callable[[], None] | None = None

    # service side
    def write(self, data: bytes) -> None:
        step = self.conn.max_payload
        view = memoryview(data)
        for offset in range(0, len(view), step):
            while not self.can_write.wait(0.25):
                if self.closed or self.conn.closed.is_set():
                    raise _Closed()
            if self.closed:
                raise _Closed()
            self.can_write.clear()
            self.conn.send(P.A_WRTE, self.local_id, self.remote_id, bytes(view[offset : offset + step]))

    def read(self) -> bytes | None:
        """The next chunk the peer wrote, or None once the stream is closed."""
        return self.inbox.get()

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
        self.conn.streams.pop(self.local_id, None)
        self.inbox.put(None)
        self.can_write.set()
        try:
            self.conn.send(P.A_CLSE, self.local_id, self.remote_id)
        except _Closed:
            pass

    # connection side
    def on_okay(self) -> None:
        self.can_write.set()

    def on_data(self, data: bytes) -> None:
        self.inbox.put(data)

    def on_remote_close(self) -> None:
        with self._lock:
            already = self.closed
            self.closed = True
        self.conn.streams.pop(self.local_id, None)
        self.inbox.put(None)
        self.can_write.set()
        if not already:
            try:
                self.conn.send(P.A_CLSE, self.local_id, self.remote_id)
            except _Closed:
                pass
            self._abort()

    def on_transport_closed(self) -> None:
        with self._lock:
            self.closed = True
        self.inbox.put(None)
        self.can_write.set()
        self._abort()

    def _abort(self) -> None:
        if self.on_abort is not None:
            try:
                self.on_abort()
            except OSError:
                pass


class _Reader:
    """Exact-size reads over a stream's incoming chunks."""

    def __init__(self, stream: _Stream) -> None:
        self.stream = stream
        self.buf = bytearray()

    def read_exact(self, size: int) -> bytes:
        while len(self.buf) < size:
            chunk = self.stream.read()
            if chunk is None:
                raise _Closed()
            self.buf += chunk
        out = bytes(self.buf[:size])
        del self.buf[:size]
        return out


class _Out:
    """Coalesces small sync replies into WRTEs of up to the connection's payload size."""

    def __init__(self, stream: _Stream) -> None:
        self.stream = stream
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, data: bytes) -> None:
        self.parts.append(data)
        self.size += len(data)
        if self.size >= self.stream.conn.max_payload:
            self.flush()

    def flush(self) -> None:
        if self.parts:
            data = b"".join(self.parts)
            self.parts, self.size = [], 0
            self.stream.write(data)


# -------------------------------------------------------------- connections


class _Connection:
    def __init__(self, device: LoopbackAdbDevice, sock: socket.socket, peer: str) -> None:
        self.device = device
        self.sock = sock
        self.peer = peer
        self.send_lock = threading.Lock()
        self.streams: dict[int, _Stream] = {}
        self.next_id = 1
        self.closed = threading.Event()
        self.online = False
        self.token: bytes | None = None
        self.max_payload = P.MAX_PAYLOAD_V1
        self.version = P.A_VERSION_MIN
        self.thread = threading.Thread(target=self._run, name=f"loopback-adb-conn-{peer}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def send(self, command: int, arg0: int, arg1: int, data: bytes = b"") -> None:
        packet = P.pack_message(command, arg0, arg1, data)
        with self.send_lock:
            if self.closed.is_set():
                raise _Closed()
            try:
                self.sock.sendall(packet)
            except OSError:
                threading.Thread(target=self.close, daemon=True).start()
                raise _Closed() from None

    def _recv_exact(self, size: int) -> bytes:
        chunks, got = [], 0
        while got < size:
            chunk = self.sock.recv(min(size - got, 1 << 20))
            if not chunk:
                raise _Closed()
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def _run(self) -> None:
        try:
            while not self.closed.is_set():
                header = self._recv_exact(P.HEADER.size)
                command, arg0, arg1, length, _check, magic = P.HEADER.unpack(header)
                if magic != command ^ 0xFFFFFFFF or length > P.MAX_ACCEPTED_PAYLOAD:
                    break  # not ADB: adbd drops such a peer
                data = self._recv_exact(length) if length else b""
                self._handle(command, arg0, arg1, data)
                if self.device._message_received():
                    self.device.drop_connections()
                    break
        except (_Closed, OSError):
            pass
        finally:
            self.close()

    def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        # A reset, not an orderly close: the peer's next read or write fails at once, as when a
        # phone drops off the network and its TCP connection is torn down.  SHUT_RD wakes the
        # reader thread without sending a FIN; close() with a zero linger sends the RST.
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            # A sender blocked on a peer that stopped reading needs SHUT_WR too (a FIN, then the RST).
            self.sock.shutdown(socket.SHUT_RDWR if self.send_lock.locked() else socket.SHUT_RD)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
        for stream in list(self.streams.values()):
            stream.on_transport_closed()
        self.streams.clear()
        self.device._forget(self)

    # ---------------------------------------------------------- dispatch

    def _handle(self, command: int, arg0: int, arg1: int, data: bytes) -> None:
        if command == P.A_CNXN:
            self.version = min(arg0, P.A_VERSION) or P.A_VERSION_MIN
            self.max_payload = max(P.MAX_PAYLOAD_V1, min(arg1, P.MAX_PAYLOAD))
            self.online = False
            if self.device.require_auth:
                self._send_token()
            else:
                self._go_online()
        elif command == P.A_AUTH:
            if self.online or self.token is None:
                return
            if arg0 == P.AUTH_SIGNATURE:
                if self.device._signature_known(self.token, data):
                    self._go_online()
                else:
                    self._send_token()
            elif arg0 == P.AUTH_RSAPUBLICKEY:
                self.device._accept_key(data)
                self._go_online()
        elif not self.online:
            return  # adbd ignores everything else until the connection is authorized
        elif command == P.A_OPEN:
            self._open(arg0, data)
        elif command == P.A_OKAY:
            stream = self.streams.get(arg1)
            if stream is not None:
                stream.on_okay()
        elif command == P.A_WRTE:
            stream = self.streams.get(arg1)
            if stream is not None:
                stream.on_data(data)
                self.send(P.A_OKAY, stream.local_id, arg0)
        elif command == P.A_CLSE:
            stream = self.streams.get(arg1)
            if stream is not None:
                stream.on_remote_close()

    def _send_token(self) -> None:
        self.token = os.urandom(P.TOKEN_SIZE)
        self.send(P.A_AUTH, P.AUTH_TOKEN, 0, self.token)

    def _go_online(self) -> None:
        self.online = True
        self.token = None
        self.send(P.A_CNXN, P.A_VERSION, P.MAX_PAYLOAD, self.device.banner().encode())

    def _open(self, remote_id: int, data: bytes) -> None:
        service = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        handler = self.device._service(service)
        if handler is None or remote_id == 0:
            self.send(P.A_CLSE, 0, remote_id)
            return
        if self.device._should_drop_for(service):
            self.device.drop_connections()
            raise _Closed()
        local_id = self.next_id
        self.next_id = self.next_id + 1 if self.next_id < 0x7FFFFFFF else 1
        stream = _Stream(self, local_id, remote_id)
        self.streams[local_id] = stream
        self.send(P.A_OKAY, local_id, remote_id)
        threading.Thread(target=self._serve, args=(handler, stream), name=f"loopback-adb-{service[:20]}", daemon=True).start()

    @staticmethod
    def _serve(handler: Callable[[_Stream], None], stream: _Stream) -> None:
        try:
            handler(stream)
        except _Closed:
            pass
        finally:
            stream.close()


# ---------------------------------------------------------------- services


def _parse_mode(text: str) -> int:
    text = text.strip()
    if not text:
        return 0o100644
    if text.lower().startswith("0x"):
        return int(text, 16)
    if len(text) > 1 and text.startswith("0"):
        return int(text, 8)
    return int(text, 10)


def _st_triplet(st: os.stat_result | None) -> tuple[int, int, int]:
    if st is None:
        return 0, 0, 0
    return st.st_mode & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF, int(st.st_mtime) & 0xFFFFFFFF


class LoopbackAdbDevice:
    """A fake Android phone on ``127.0.0.1:PORT`` speaking the ADB protocol (see the module docstring).

    ``with LoopbackAdbDevice() as device:`` starts it on a free port; ``device.address`` is
    what ``adb connect`` takes.  The sandbox (a new temporary folder unless given, removed on
    :meth:`stop` only in that case) stands for the phone's filesystem.
    """

    def __init__(self, host: str = LOOPBACK_HOST, port: int = 0, sandbox: Path | None = None, serial: str | None = None) -> None:
        if host != LOOPBACK_HOST:
            raise FakeDeviceError(f"the loopback ADB device only listens on {LOOPBACK_HOST}, not {host!r}")
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise FakeDeviceError(f"invalid port {port!r}")
        self.host = host
        self.port = port
        self._own_sandbox = sandbox is None
        self.sandbox = check_sandbox_path(Path(tempfile.mkdtemp(prefix="chameleon-loopback-")) if sandbox is None else Path(sandbox))
        self.serial = serial or f"LOOPBACK{secrets.token_hex(4).upper()}"
        self.identity: dict[str, str] = default_identity(self.serial)
        self.require_auth = True
        populate(self.sandbox, self.identity)
        self.auth_events: list[str] = []  # "signature", "public_key", "bad_signature": what each AUTH step did
        self._keys: list[tuple[int, int]] = []
        self._lock = threading.Lock()
        self._connections: set[_Connection] = set()
        self._processes: set[subprocess.Popen] = set()
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
        with self._lock:
            processes = list(self._processes)
        for proc in processes:
            _kill(proc)
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
            conn = _Connection(self, sock, f"{addr[0]}:{addr[1]}")
            with self._lock:
                if self._stopping.is_set():
                    sock.close()
                    break
                self._connections.add(conn)
                self.connections_accepted += 1
            conn.start()

    def _forget(self, conn: _Connection) -> None:
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

    def _signature_known(self, token: bytes, signature: bytes) -> bool:
        with self._lock:
            keys = list(self._keys)
        ok = any(P.verify_signature(key, token, signature) for key in keys)
        self.auth_events.append("signature" if ok else "bad_signature")
        return ok

    def _accept_key(self, blob: bytes) -> None:
        self.auth_events.append("public_key")
        key = P.parse_public_key(blob)
        if key is None:
            return  # accepted for this connection, but nothing to check later signatures against
        with self._lock:
            if key in self._keys:
                return
            self._keys.append(key)
        line = blob.split(b"\0", 1)[0].strip()
        path = self._keys_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as f:
            f.write(line + b"\n")

    # ------------------------------------------------------------ services

    def _service(self, service: str) -> Callable[[_Stream], None] | None:
        if service == "sync:":
            return self._sync
        if service.startswith("exec:"):
            command = service[len("exec:") :]
            return lambda stream: self._raw_shell(stream, command, unmap=False)
        head, colon, command = service.partition(":")
        if not colon:
            return None
        args = head.split(",")
        if args[0] != "shell":
            return None
        if "v2" in args[1:]:
            return lambda stream: self._shell_v2(stream, command, interactive="pty" in args[1:])
        return lambda stream: self._raw_shell(stream, command, unmap=True, interactive="raw" not in args[1:])

    def _spawn(self, command: str, merge_stderr: bool, interactive: bool = False) -> subprocess.Popen:
        sandbox = str(self.sandbox)
        if command.strip():
            argv = ["/bin/sh", "-c", rewrite_command(self.sandbox, command)]
        else:  # an interactive shell, on pipes: with prompts where a terminal was asked for
            argv = ["/bin/sh", "-i"] if interactive else ["/bin/sh"]
        env = dict(os.environ)
        env["PATH"] = f"{sandbox}/system/bin:" + env.get("PATH", "/usr/bin:/bin")
        env["TMPDIR"] = f"{sandbox}/data/local/tmp"
        env["HOME"] = sandbox
        env["TERM"] = "dumb"
        env["LOOPBACK_ADB_SANDBOX"] = sandbox
        env["ANDROID_SERIAL"] = self.serial
        proc = subprocess.Popen(
            argv,
            cwd=sandbox,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
            start_new_session=True,
            bufsize=0,
        )
        with self._lock:
            self._processes.add(proc)
        return proc

    def _reap(self, proc: subprocess.Popen) -> int:
        code = proc.wait()
        with self._lock:
            self._processes.discard(proc)
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass
        return code

    @staticmethod
    def _feed_stdin(proc: subprocess.Popen, chunks: Callable[[], bytes | None], v2: bool) -> None:
        """Copy what the peer writes to the command's stdin (v2: parse stdin / close-stdin packets)."""
        buf = bytearray()
        stdin = proc.stdin
        try:
            while True:
                chunk = chunks()
                if chunk is None:
                    break
                if not v2:
                    if stdin is not None:
                        stdin.write(chunk)
                    continue
                buf += chunk
                while len(buf) >= P.SHELL_HEADER.size:
                    packet_id, length = P.SHELL_HEADER.unpack_from(buf)
                    if len(buf) < P.SHELL_HEADER.size + length:
                        break
                    payload = bytes(buf[P.SHELL_HEADER.size : P.SHELL_HEADER.size + length])
                    del buf[: P.SHELL_HEADER.size + length]
                    if packet_id == P.SHELL_STDIN and stdin is not None:
                        stdin.write(payload)
                    elif packet_id == P.SHELL_CLOSE_STDIN and stdin is not None:
                        stdin.close()
                        stdin = None
        except (OSError, ValueError):
            pass
        finally:
            if stdin is not None:
                try:
                    stdin.close()
                except OSError:
                    pass

    def _raw_shell(self, stream: _Stream, command: str, unmap: bool, interactive: bool = False) -> None:
        try:
            proc = self._spawn(command, merge_stderr=True, interactive=interactive)
        except PathEscape as e:
            stream.write(f"/system/bin/sh: {e}\n".encode())
            return
        stream.on_abort = lambda: _kill(proc)
        threading.Thread(target=self._feed_stdin, args=(proc, stream.read, False), daemon=True).start()
        unmapper = OutputUnmapper(self.sandbox) if unmap else None
        try:
            assert proc.stdout is not None
            fd = proc.stdout.fileno()
            while True:
                chunk = os.read(fd, 64 * 1024)
                if not chunk:
                    break
                data = unmapper.feed(chunk) if unmapper else chunk
                if data:
                    stream.write(data)
            if unmapper is not None:
                tail = unmapper.flush()
                if tail:
                    stream.write(tail)
        except _Closed:
            _kill(proc)
            raise
        finally:
            self._reap(proc)

    def _shell_v2(self, stream: _Stream, command: str, interactive: bool = False) -> None:
        try:
            proc = self._spawn(command, merge_stderr=False, interactive=interactive)
        except PathEscape as e:
            stream.write(P.shell_packet(P.SHELL_STDERR, f"/system/bin/sh: {e}\n".encode()) + P.shell_packet(P.SHELL_EXIT, b"\x01"))
            return
        stream.on_abort = lambda: _kill(proc)
        threading.Thread(target=self._feed_stdin, args=(proc, stream.read, True), daemon=True).start()
        write_lock = threading.Lock()
        failed = threading.Event()

        def pump(pipe, packet_id: int) -> None:
            unmapper = OutputUnmapper(self.sandbox)
            fd = pipe.fileno()
            try:
                while True:
                    chunk = os.read(fd, 64 * 1024)
                    if not chunk:
                        break
                    data = unmapper.feed(chunk)
                    if data:
                        with write_lock:
                            stream.write(P.shell_packet(packet_id, data))
                tail = unmapper.flush()
                if tail:
                    with write_lock:
                        stream.write(P.shell_packet(packet_id, tail))
            except (_Closed, OSError):
                failed.set()
                _kill(proc)

        err_thread = threading.Thread(target=pump, args=(proc.stderr, P.SHELL_STDERR), daemon=True)
        err_thread.start()
        pump(proc.stdout, P.SHELL_STDOUT)
        err_thread.join()
        code = self._reap(proc)
        if failed.is_set():
            raise _Closed()
        if code < 0:
            code = 128 - code  # killed by a signal, as sh reports it
        stream.write(P.shell_packet(P.SHELL_EXIT, bytes([code & 0xFF])))

    # ----------------------------------------------------------------- sync

    def _sync_path(self, remote: str, follow: bool = True) -> Path:
        path = map_device_path(self.sandbox, remote)
        real = Path(os.path.realpath(path if follow else path.parent))
        if real != self.sandbox and self.sandbox not in real.parents:
            raise PathEscape(f"device path {remote!r} leads out of the sandbox")
        return path

    def _sync(self, stream: _Stream) -> None:
        reader, out = _Reader(stream), _Out(stream)

        def fail(message: str) -> None:
            data = message.encode("utf-8", "replace")
            out.add(b"FAIL" + struct.pack("<I", len(data)) + data)

        while True:
            ident, length = P.SYNC_HEADER.unpack(reader.read_exact(8))
            if ident == b"QUIT":
                out.flush()
                return
            if ident not in (b"STAT", b"LIST", b"SEND", b"RECV"):
                fail(f"unknown sync request {ident!r} (this device speaks sync v1 only)")
                out.flush()
                return
            if length > 4096:
                fail("path too long")
                out.flush()
                return
            remote = reader.read_exact(length).decode("utf-8", "surrogateescape")
            if ident == b"STAT":
                try:
                    st: os.stat_result | None = os.lstat(self._sync_path(remote, follow=False))
                except (OSError, PathEscape):
                    st = None
                out.add(b"STAT" + struct.pack("<3I", *_st_triplet(st)))
            elif ident == b"LIST":
                self._sync_list(remote, out)
            elif ident == b"SEND":
                self._sync_send(remote, reader, out, fail)
            else:
                self._sync_recv(remote, out, fail)
            out.flush()

    def _sync_list(self, remote: str, out: _Out) -> None:
        try:
            folder = self._sync_path(remote)
            names = sorted(os.listdir(folder))
        except (OSError, PathEscape):
            names, folder = [], None
        if folder is not None:
            for name in [".", ".."] + names:
                if name == ".":
                    target = folder
                elif name == "..":
                    target = folder.parent if folder != self.sandbox else folder
                else:
                    target = folder / name
                try:
                    st = os.lstat(target)
                except OSError:
                    continue
                raw = name.encode("utf-8", "surrogateescape")
                out.add(b"DENT" + struct.pack("<4I", *_st_triplet(st), len(raw)) + raw)
        out.add(b"DONE" + b"\0" * 16)

    def _sync_send(self, spec: str, reader: _Reader, out: _Out, fail: Callable[[str], None]) -> None:
        remote, comma, mode_text = spec.rpartition(",")
        if not comma:
            remote, mode_text = spec, ""
        problem: str | None = None
        handle = None
        tmp: Path | None = None
        target: Path | None = None
        try:
            mode = _parse_mode(mode_text)
        except ValueError:
            mode, problem = 0o100644, f"bad mode {mode_text!r}"
        if problem is None:
            try:
                target = self._sync_path(remote, follow=False)
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.parent / f".{target.name}.loopback-{secrets.token_hex(4)}"
                handle = open(tmp, "wb")  # noqa: SIM115 (closed on every path below)
            except PathEscape as e:
                problem = str(e)
            except OSError as e:
                problem = f"couldn't create file: {e.strerror}"
        link_target = bytearray()
        try:
            while True:
                ident, size = P.SYNC_HEADER.unpack(reader.read_exact(8))
                if ident == b"DONE":
                    mtime = size
                    break
                if ident != b"DATA":
                    raise _Closed()  # protocol error: adbd closes the stream
                if size > P.SYNC_DATA_MAX:
                    problem = problem or f"data packet of {size} bytes exceeds {P.SYNC_DATA_MAX}"
                chunk = reader.read_exact(size)
                if problem is None and handle is not None:
                    try:
                        if stat.S_ISLNK(mode):
                            link_target += chunk
                        else:
                            handle.write(chunk)
                    except OSError as e:
                        problem = f"write failed: {e.strerror}"
        except BaseException:
            if handle is not None:
                handle.close()
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            raise
        if handle is not None:
            handle.close()
        if problem is None and tmp is not None and target is not None:
            try:
                if stat.S_ISLNK(mode):
                    tmp.unlink(missing_ok=True)
                    if target.is_symlink() or target.exists():
                        target.unlink()
                    os.symlink(link_target.decode("utf-8", "surrogateescape"), target)
                else:
                    os.chmod(tmp, stat.S_IMODE(mode) or 0o644)
                    os.replace(tmp, target)
                    if mtime:
                        os.utime(target, (mtime, mtime))
            except OSError as e:
                problem = f"couldn't create file: {e.strerror}"
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if problem is not None:
            fail(problem)
        else:
            out.add(b"OKAY" + b"\0" * 4)

    def _sync_recv(self, remote: str, out: _Out, fail: Callable[[str], None]) -> None:
        try:
            handle = open(self._sync_path(remote), "rb")  # noqa: SIM115 (used in a with block below)
        except PathEscape as e:
            fail(str(e))
            return
        except OSError as e:
            fail(f"open failed: {e.strerror}")
            return
        with handle:
            while True:
                try:
                    chunk = handle.read(P.SYNC_DATA_MAX)
                except OSError as e:
                    fail(f"read failed: {e.strerror}")
                    return
                if not chunk:
                    break
                out.add(b"DATA" + struct.pack("<I", len(chunk)) + chunk)
        out.add(b"DONE" + b"\0" * 4)


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: the command and what it started
    except (ProcessLookupError, PermissionError):
        try:
            proc.kill()
        except OSError:
            pass


def install_standin_tools(device: LoopbackAdbDevice, folder: str = "/data/local/tmp/chameleon") -> None:
    """Put the stand-in ``benchmark_model`` and ``onnxruntime_perf_test`` where the device profiles look for them."""
    from harness.fake_device.benchmark_model_standin import standin_benchmark_model_path, standin_ort_perf_test_path

    for tool, standin in (("benchmark_model", standin_benchmark_model_path()), ("onnxruntime_perf_test", standin_ort_perf_test_path())):
        target = device.device_path(f"{folder}/{tool}")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(standin, target)
        target.chmod(0o755)


def serve_forever(port: int = 5555, sandbox: Path | None = None, install_tools: bool = False) -> int:
    """Run a loopback device on ``127.0.0.1:port`` until Ctrl-C or SIGTERM (the ``bench fake-device`` command)."""
    device = LoopbackAdbDevice(port=port, sandbox=sandbox).start()
    if install_tools:
        install_standin_tools(device)
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
