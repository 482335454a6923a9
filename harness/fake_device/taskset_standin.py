"""``taskset`` stand-in of the loopback ADB device (copied to ``SANDBOX/system/bin/taskset``).

The device claims 8 CPUs (cpu0-3 little, cpu4-7 big); the host may have 2.
The host's own taskset would refuse ``taskset 10 cmd`` there, so this one maps
each requested device CPU ``i`` onto host CPU ``host[i % len(host)]`` (``host``
= the CPUs this process may run on), pins to those, records the mapping in
``SANDBOX/.loopback/taskset.jsonl`` and runs the command.

Usage as on the phone (toybox / util-linux): ``taskset MASK CMD [ARGS...]``,
``taskset -p PID``, ``taskset -p MASK PID``; ``-a`` is accepted.  The mask is
hexadecimal, with or without ``0x``.  A mask naming no device CPU fails with
``Invalid argument`` like the kernel's.  Standalone: imports nothing from Chameleon.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

DEVICE_CPUS = 8


def _sandbox() -> Path:
    # SANDBOX/system/bin/taskset
    return Path(__file__).resolve().parent.parent.parent


def _host_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def _parse_mask(text: str) -> int | None:
    body = text[2:] if text.lower().startswith("0x") else text
    try:
        return int(body, 16)
    except ValueError:
        return None


def _mapping(mask: int) -> tuple[list[int], list[int]]:
    device = [cpu for cpu in range(DEVICE_CPUS) if mask >> cpu & 1]
    host = _host_cpus()
    return device, sorted({host[cpu % len(host)] for cpu in device})


def _device_mask_of(pid: int, affinity: set[int]) -> int:
    """The device mask a process runs under: the one last requested for it, if its host CPUs still match."""
    try:
        lines = (_sandbox() / ".loopback" / "taskset.jsonl").read_text().splitlines()
    except OSError:
        lines = []
    for line in reversed(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("pid") == pid:
            if set(entry.get("host_cpus", ())) == affinity:
                return int(entry["mask"], 16)
            break
    host = _host_cpus()
    return sum(1 << cpu for cpu in range(DEVICE_CPUS) if host[cpu % len(host)] in affinity) or (1 << DEVICE_CPUS) - 1


def _record(entry: dict) -> None:
    log = _sandbox() / ".loopback" / "taskset.jsonl"
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as f:
            f.write(json.dumps(entry) + "\n")
    except OSError:
        pass


def _fail(message: str, code: int = 1) -> int:
    print(f"taskset: {message}", file=sys.stderr)
    return code


def main(argv: list[str]) -> int:
    args = list(argv)
    pid_mode = False
    while args and args[0].startswith("-"):
        flag = args.pop(0)
        if flag == "--":
            break
        if flag not in ("-p", "-a", "-ap", "-pa"):
            return _fail(f"unknown option {flag}\nusage: taskset [-ap] [mask] [PID | cmd [args...]]")
        pid_mode = pid_mode or "p" in flag
    if pid_mode:
        if len(args) == 1:
            pid = int(args[0]) if args[0].isdigit() else -1
            try:
                current = os.sched_getaffinity(pid)
            except (OSError, ValueError) as e:
                return _fail(f"failed to get pid {args[0]}'s affinity: {getattr(e, 'strerror', e)}")
            print(f"pid {pid}'s current affinity mask: {_device_mask_of(pid, current):x}")
            return 0
        if len(args) != 2 or not args[1].isdigit():
            return _fail("usage: taskset -p [mask] PID")
        mask = _parse_mask(args[0])
        if mask is None:
            return _fail(f"bad mask '{args[0]}'")
        pid = int(args[1])
        device, host = _mapping(mask)
        try:
            before = _device_mask_of(pid, os.sched_getaffinity(pid))
            if not device:
                raise OSError(22, "Invalid argument")
            os.sched_setaffinity(pid, host)
        except OSError as e:
            return _fail(f"failed to set pid {pid}'s affinity: {e.strerror}")
        _record({"time": time.time(), "pid": pid, "mask": f"0x{mask:x}", "device_cpus": device, "host_cpus": host, "command": None})
        print(f"pid {pid}'s current affinity mask: {before:x}")
        print(f"pid {pid}'s new affinity mask: {mask:x}")
        return 0
    if len(args) < 2:
        return _fail("usage: taskset [-ap] [mask] [PID | cmd [args...]]")
    mask = _parse_mask(args[0])
    if mask is None:
        return _fail(f"bad mask '{args[0]}'")
    device, host = _mapping(mask)
    if not device:
        return _fail("failed to set pid 0's affinity: Invalid argument")
    command = args[1:]
    _record({"time": time.time(), "pid": os.getpid(), "mask": f"0x{mask:x}", "device_cpus": device, "host_cpus": host, "command": command})
    try:
        os.sched_setaffinity(0, host)
    except OSError as e:
        return _fail(f"failed to set pid 0's affinity: {e.strerror}")
    sys.stdout.flush()
    try:
        os.execvp(command[0], command)
    except OSError as e:
        return _fail(f"failed to execute {command[0]}: {e.strerror}", 127)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
