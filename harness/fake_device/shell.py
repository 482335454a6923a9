"""The shell services of the loopback device: ``shell:``, ``shell,v2,...:`` and ``exec:``.

:class:`ShellService` runs each command with ``/bin/sh`` on this machine,
inside the sandbox folder (the command's device paths rewritten to sandbox
paths, its output's sandbox paths mapped back), in a process group of its
own so that a dropped connection kills the command and what it started.
Shell v1 and ``exec:`` stream the merged output raw; shell v2 sends stdout,
stderr and the exit status as shell-protocol packets and reads stdin /
close-stdin packets.  There is no pseudo-terminal: every command runs on
pipes.

Imports: :mod:`harness.fake_device.protocol`, :mod:`harness.fake_device.sandbox`
and :mod:`harness.fake_device.transport`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

from harness.fake_device import protocol as P
from harness.fake_device.sandbox import OutputUnmapper, PathEscape, rewrite_command
from harness.fake_device.transport import Closed, Stream


class ShellService:
    """Runs the shell and exec commands of one device (sandbox ``sandbox``, ``ANDROID_SERIAL`` ``serial``).

    It keeps the commands still running, so that :meth:`kill_all` can end them when the device stops.
    """

    def __init__(self, sandbox: Path, serial: str) -> None:
        self.sandbox = sandbox
        self.serial = serial
        self._lock = threading.Lock()
        self._processes: set[subprocess.Popen] = set()

    def kill_all(self) -> None:
        """Kill every command still running (the device is stopping)."""
        with self._lock:
            processes = list(self._processes)
        for proc in processes:
            kill_process(proc)

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

    def raw(self, stream: Stream, command: str, unmap: bool, interactive: bool = False) -> None:
        try:
            proc = self._spawn(command, merge_stderr=True, interactive=interactive)
        except PathEscape as e:
            stream.write(f"/system/bin/sh: {e}\n".encode())
            return
        stream.on_abort = lambda: kill_process(proc)
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
        except Closed:
            kill_process(proc)
            raise
        finally:
            self._reap(proc)

    def v2(self, stream: Stream, command: str, interactive: bool = False) -> None:
        try:
            proc = self._spawn(command, merge_stderr=False, interactive=interactive)
        except PathEscape as e:
            stream.write(P.shell_packet(P.SHELL_STDERR, f"/system/bin/sh: {e}\n".encode()) + P.shell_packet(P.SHELL_EXIT, b"\x01"))
            return
        stream.on_abort = lambda: kill_process(proc)
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
            except (Closed, OSError):
                failed.set()
                kill_process(proc)

        err_thread = threading.Thread(target=pump, args=(proc.stderr, P.SHELL_STDERR), daemon=True)
        err_thread.start()
        pump(proc.stdout, P.SHELL_STDOUT)
        err_thread.join()
        code = self._reap(proc)
        if failed.is_set():
            raise Closed()
        if code < 0:
            code = 128 - code  # killed by a signal, as sh reports it
        stream.write(P.shell_packet(P.SHELL_EXIT, bytes([code & 0xFF])))


def kill_process(proc: subprocess.Popen) -> None:
    """Kill ``proc`` and everything in its process group, unless it has ended."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: the command and what it started
    except (ProcessLookupError, PermissionError):
        try:
            proc.kill()
        except OSError:
            pass
