"""The ``sync:`` service of the loopback device: adb push, pull, ls and stat (sync v1).

:class:`SyncService` answers STAT, LIST, SEND, RECV and QUIT requests on one
stream, against the sandbox folder that stands for the phone's filesystem.
A push is written to a temporary file and moved into place when DONE
arrives (so a dropped push leaves no partial file), with the mode and
modification time it was sent with; a symlink mode creates a symlink, whose
target must stay in the sandbox (an absolute target is a device path).  Paths
that lead out of the sandbox, by ``..`` or through a symlink, fail with a
FAIL reply.  There is no sync v2
(STA2/LST2/SND2/RCV2).

Imports: :mod:`harness.fake_device.protocol`, :mod:`harness.fake_device.sandbox`
and :mod:`harness.fake_device.transport`.
"""

from __future__ import annotations

import os
import secrets
import stat
import struct
from collections.abc import Callable
from pathlib import Path

from harness.fake_device import protocol as P
from harness.fake_device.sandbox import PathEscape, inside, map_device_path, symlink_target
from harness.fake_device.transport import Closed, Stream


class _Reader:
    """Exact-size reads over a stream's incoming chunks."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.buf = bytearray()

    def read_exact(self, size: int) -> bytes:
        while len(self.buf) < size:
            chunk = self.stream.read()
            if chunk is None:
                raise Closed()
            self.buf += chunk
        out = bytes(self.buf[:size])
        del self.buf[:size]
        return out


class _Out:
    """Coalesces small sync replies into WRTEs of up to the connection's payload size."""

    def __init__(self, stream: Stream) -> None:
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


class SyncService:
    """The ``sync:`` service over the sandbox folder ``sandbox``: :meth:`serve` runs one sync session."""

    def __init__(self, sandbox: Path) -> None:
        self.sandbox = sandbox

    def _path(self, remote: str, follow: bool = True) -> Path:
        path = map_device_path(self.sandbox, remote)
        # Not following: the last component may be a symlink (stat, or a push replacing it), its folder may not.
        if not inside(self.sandbox, path if follow else path.parent):
            raise PathEscape(f"device path {remote!r} leads out of the sandbox")
        return path

    def serve(self, stream: Stream) -> None:
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
                    st: os.stat_result | None = os.lstat(self._path(remote, follow=False))
                except (OSError, PathEscape):
                    st = None
                out.add(b"STAT" + struct.pack("<3I", *_st_triplet(st)))
            elif ident == b"LIST":
                self._list(remote, out)
            elif ident == b"SEND":
                self._send(remote, reader, out, fail)
            else:
                self._recv(remote, out, fail)
            out.flush()

    def _list(self, remote: str, out: _Out) -> None:
        try:
            folder = self._path(remote)
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

    def _send(self, spec: str, reader: _Reader, out: _Out, fail: Callable[[str], None]) -> None:
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
                target = self._path(remote, follow=False)
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
                    raise Closed()  # protocol error: adbd closes the stream
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
                    pointee = symlink_target(self.sandbox, target, link_target.decode("utf-8", "surrogateescape"))
                    if target.is_symlink() or target.exists():
                        target.unlink()
                    os.symlink(pointee, target)
                else:
                    os.chmod(tmp, stat.S_IMODE(mode) or 0o644)
                    os.replace(tmp, target)
                    if mtime:
                        os.utime(target, (mtime, mtime))
            except PathEscape as e:
                problem = str(e)
            except OSError as e:
                problem = f"couldn't create file: {e.strerror}"
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if problem is not None:
            fail(problem)
        else:
            out.add(b"OKAY" + b"\0" * 4)

    def _recv(self, remote: str, out: _Out, fail: Callable[[str], None]) -> None:
        try:
            handle = open(self._path(remote), "rb")  # noqa: SIM115 (used in a with block below)
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
