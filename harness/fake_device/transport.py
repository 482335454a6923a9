"""The ADB transport of the loopback device: connections, their handshake and their streams.

A :class:`Connection` reads ADB messages from one client socket, runs the
CNXN / AUTH handshake (asking its device whether a signature or key is
accepted), opens a :class:`Stream` per OPEN and hands it to the service the
device names for it, on a thread of its own; WRTE / OKAY / CLSE move data
and flow control between the client and that stream.  A dropped connection
is reset (RST), not closed, as when a phone falls off the network.

Imports: :mod:`harness.fake_device.protocol` only.  The device is reached
through the :class:`DeviceSide` interface, so this module does not import
:mod:`harness.fake_device.device`.
"""

from __future__ import annotations

import os
import queue
import socket
import struct
import threading
from collections.abc import Callable
from typing import Protocol

from harness.fake_device import protocol as P


class Closed(Exception):
    """The stream or the connection went away."""


class DeviceSide(Protocol):
    """What a connection asks of the device that accepted it (:class:`~harness.fake_device.device.LoopbackAdbDevice`)."""

    require_auth: bool

    def banner(self) -> str: ...
    def drop_connections(self) -> int: ...
    def _message_received(self) -> bool: ...
    def _forget(self, conn: Connection) -> None: ...
    def _signature_known(self, token: bytes, signature: bytes) -> bool: ...
    def _accept_key(self, blob: bytes) -> bool: ...
    def _service(self, service: str) -> Callable[[Stream], None] | None: ...
    def _should_drop_for(self, service: str) -> bool: ...


# ------------------------------------------------------------------ streams


class Stream:
    """One ADB stream on a connection: outgoing WRTEs gated by the peer's OKAYs, incoming data queued."""

    def __init__(self, conn: Connection, local_id: int, remote_id: int) -> None:
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
                    raise Closed()
            if self.closed:
                raise Closed()
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
        except Closed:
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
            except Closed:
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


# -------------------------------------------------------------- connections


class Connection:
    def __init__(self, device: DeviceSide, sock: socket.socket, peer: str) -> None:
        self.device = device
        self.sock = sock
        self.peer = peer
        self.send_lock = threading.Lock()
        self.streams: dict[int, Stream] = {}
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
                raise Closed()
            try:
                self.sock.sendall(packet)
            except OSError:
                threading.Thread(target=self.close, daemon=True).start()
                raise Closed() from None

    def _recv_exact(self, size: int) -> bytes:
        chunks, got = [], 0
        while got < size:
            chunk = self.sock.recv(min(size - got, 1 << 20))
            if not chunk:
                raise Closed()
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
        except (Closed, OSError):
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
                if not self.device._accept_key(data):
                    # Where a phone would wait for its user's "Allow", nobody will answer here: the
                    # client learns at once (its connection closes) instead of at its auth timeout.
                    raise Closed()
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
            raise Closed()
        local_id = self.next_id
        self.next_id = self.next_id + 1 if self.next_id < 0x7FFFFFFF else 1
        stream = Stream(self, local_id, remote_id)
        self.streams[local_id] = stream
        self.send(P.A_OKAY, local_id, remote_id)
        threading.Thread(target=self._serve, args=(handler, stream), name=f"loopback-adb-{service[:20]}", daemon=True).start()

    @staticmethod
    def _serve(handler: Callable[[Stream], None], stream: Stream) -> None:
        try:
            handler(stream)
        except Closed:
            pass
        finally:
            stream.close()
