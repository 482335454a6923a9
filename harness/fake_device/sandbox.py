"""The loopback device's filesystem: a host folder standing for the phone's.

Path mapping (the device runs ``/bin/sh -c`` on THIS machine, so it cannot
chroot; it rewrites paths instead):

* **Sync (push/pull/stat/list)**: every absolute device path maps into the
  sandbox, ``/x/y`` -> ``SANDBOX/x/y``.
* **Shell commands**: paths that start a word (after a blank, a quote, ``=``,
  ``:``, a redirection or ``;|&(`,``) and begin with ``/data``, ``/sdcard``,
  ``/storage``, ``/sys``, ``/system``, ``/vendor`` or ``/proc/cpuinfo`` are
  rewritten to ``SANDBOX/...`` in the command string; everything else
  (``/bin/sh``, ``/dev/null``, ``/tmp``) is the host's.  The sandbox prefix is
  removed again from the command's output, so ``ls``, error messages and the
  stand-in tools print device paths.  This is text substitution, good for the
  simple command lines Chameleon sends, not a shell parser.
* A device path with a ``..`` component is refused (sync: ``FAIL``; shell:
  exit status 1 with a message), so nothing escapes the sandbox by name; so
  is one that resolves out of it through a symlink (sync checks the real
  path; the shell checks each rewritten path and every match of a glob in
  it).  In a shell command a device path's word may not hold ``$``, a
  backquote, a backslash or a brace, nor continue in quotes towards a
  ``..``: the shell would expand them after the check.  A symlink pushed
  through sync points into the sandbox (an absolute target is a device path)
  or is refused.
* What this does NOT confine: a shell command is a real command of this
  machine, run as the user who started the device; a host path outside the
  prefixes above (``cat /etc/passwd``) is the host's.  Only clients with an
  authorized key (:mod:`harness.fake_device.keys`) get a shell.
* The sandbox folder must be new, empty or an earlier loopback sandbox (it
  holds ``.loopback/``): every file in it is served to clients, so a folder
  such as the home folder is refused (:func:`prepare_sandbox`).

Layout written by :func:`populate`::

    SANDBOX/system/bin/     getprop, taskset, sh (a script running /bin/sh; a symlink would lead out)
                            (and md5sum if the host lacks one); first on PATH
    SANDBOX/data/local/tmp/ where benchmark binaries and models are pushed
    SANDBOX/sdcard/
    SANDBOX/sys/devices/system/cpu/cpu{0..7}/cpufreq/{scaling_cur_freq,cpuinfo_max_freq,...}
    SANDBOX/sys/class/thermal/thermal_zone0/{temp,type}   temp in millidegrees Celsius
    SANDBOX/proc/cpuinfo
    SANDBOX/data/misc/adb/adb_keys   public keys the device accepted (as on a phone)
    SANDBOX/.loopback/taskset.jsonl  one JSON record per taskset call (mask -> host CPUs)
"""

from __future__ import annotations

import glob
import os
import platform
import re
import shlex
import shutil
import sys
from pathlib import Path, PurePosixPath

from harness.errors import ChameleonError


class FakeDeviceError(ChameleonError):
    """A loopback ADB device that cannot be set up or was asked for something impossible."""


class PathEscape(FakeDeviceError):
    """A device path that would leave the sandbox."""


DEVICE_CPUS = 8
# A simulated big.LITTLE layout: cpu0-3 little, cpu4-7 big (kHz).
LITTLE_MAX_KHZ = 1_800_000
BIG_MAX_KHZ = 2_400_000
MIN_KHZ = 300_000
DEFAULT_TEMPERATURE_C = 35.0

COMMAND_PREFIXES = ("data", "sdcard", "storage", "sys", "system", "vendor", "proc/cpuinfo")
_STARTS_WORD = r"(?<![^\s'\"=:<>(;|&,`])"
_PATH_CHAR = r"[^\s'\";|&)<>`]"
_COMMAND_PATH = re.compile(_STARTS_WORD + r"/(?:" + "|".join(re.escape(p) for p in COMMAND_PREFIXES) + r")(?=$|/|[\s'\";|&)<>`])" + _PATH_CHAR + "*")
# Characters a sandbox path may hold: it is pasted into shell command lines unquoted.
_SAFE_SANDBOX = re.compile(r"^[A-Za-z0-9_./+@%-]+$")


def host_abi() -> str:
    machine = platform.machine().lower()
    abis = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64-v8a", "arm64": "arm64-v8a", "i686": "x86", "i386": "x86"}
    abis.update(armv7l="armeabi-v7a", armv8l="armeabi-v7a")
    return abis.get(machine, machine or "unknown")


def default_identity(serial: str) -> dict[str, str]:
    """The loopback device's own properties (``getprop``): a simulator, never a phone's."""
    abi = host_abi()
    release, sdk = "14", "34"
    return {
        "ro.product.manufacturer": "Chameleon",
        "ro.product.brand": "chameleon",
        "ro.product.name": "loopback",
        "ro.product.model": "Loopback ADB device",
        "ro.product.device": "loopback",
        "ro.product.board": "loopback",
        "ro.board.platform": "loopback-sim",
        "ro.hardware": "loopback",
        "ro.soc.manufacturer": "Chameleon",
        "ro.soc.model": "none (simulated)",
        "ro.build.id": "LOOPBACK",
        "ro.build.type": "userdebug",
        "ro.build.tags": "test-keys",
        "ro.build.version.release": release,
        "ro.build.version.sdk": sdk,
        "ro.build.fingerprint": f"chameleon/loopback/loopback:{release}/LOOPBACK/1:userdebug/test-keys",
        "ro.product.cpu.abi": abi,
        "ro.product.cpu.abilist": abi,
        "ro.serialno": serial,
        "ro.boot.serialno": serial,
        "ro.debuggable": "1",
        "sys.boot_completed": "1",
    }


def check_sandbox_path(sandbox: Path) -> Path:
    sandbox = Path(sandbox).expanduser().resolve()
    if not _SAFE_SANDBOX.match(str(sandbox)):
        raise FakeDeviceError(
            f"sandbox path {str(sandbox)!r} holds characters the device's command rewriting cannot paste into a shell line; use a plain path"
        )
    if sandbox == Path("/"):
        raise FakeDeviceError("the sandbox cannot be the host's root folder")
    return sandbox


SANDBOX_MARKER = ".loopback"  # a folder every loopback sandbox holds


def prepare_sandbox(sandbox: Path) -> Path:
    """The sandbox folder, created and checked before the device listens; a problem names the folder.

    It must be a folder this user can write, and new, empty or an earlier loopback sandbox:
    the device serves every file in it to its clients.
    """
    sandbox = check_sandbox_path(sandbox)
    if sandbox.exists() and not sandbox.is_dir():
        raise FakeDeviceError(f"sandbox {sandbox} is a file, not a folder")
    try:
        sandbox.mkdir(parents=True, exist_ok=True)
        stray = next((p.name for p in sandbox.iterdir() if p.name != SANDBOX_MARKER), None)
    except OSError as e:
        raise FakeDeviceError(f"sandbox {sandbox}: cannot create or read the folder ({e.strerror or e})") from None
    if stray is not None and not (sandbox / SANDBOX_MARKER).is_dir():
        raise FakeDeviceError(f"sandbox {sandbox} already holds files ({stray!r}...) and is not a loopback sandbox; "
                              "give a new or empty folder (the device serves every file in it)")
    probe = sandbox / f".write-probe-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise FakeDeviceError(f"sandbox {sandbox} is not writable ({e.strerror or e})") from None
    return sandbox


def inside(sandbox: Path, path: str | Path) -> bool:
    """Whether ``path``, its symlinks resolved, lies in the sandbox (``sandbox`` itself resolved)."""
    real = os.path.realpath(path)
    return real == str(sandbox) or real.startswith(str(sandbox) + os.sep)


def device_parts(remote: str) -> tuple[str, ...]:
    """The components of an absolute device path, refusing ``..`` (relative paths count from ``/``)."""
    if "\0" in remote:
        raise PathEscape(f"device path {remote!r} holds a NUL byte")
    parts = tuple(p for p in PurePosixPath("/" + remote.lstrip("/")).parts[1:] if p != ".")
    if ".." in parts:
        raise PathEscape(f"device path {remote!r} escapes the sandbox ('..')")
    return parts


def map_device_path(sandbox: Path, remote: str) -> Path:
    return sandbox.joinpath(*device_parts(remote))


# The rest of a shell word after a device path: up to a blank or an operator (quotes do not end a word).
_WORD_REST = re.compile(r"[^\s;|&<>()]*")
# Expanded by the shell after the rewriting: a path holding them could name anything once expanded.
_EXPANDED = re.compile(r"[$`\\{}]")


def rewrite_command(sandbox: Path, command: str) -> str:
    """``command`` with its device paths pointing into the sandbox (see the module docstring)."""

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        rest = _WORD_REST.match(match.string, match.end())
        # The shell joins quoted pieces to the word: '/data/.'.'/..' is /data/../.. once unquoted.
        word = token + (rest.group(0) if rest else "")
        if _EXPANDED.search(word):
            raise PathEscape(f"device path {word!r} holds a shell expansion ($, `, \\, {{}}) that could lead out of the sandbox")
        unquoted = word.replace("'", "").replace('"', "")
        if ".." in unquoted.split("/"):
            raise PathEscape(f"device path {unquoted!r} escapes the sandbox ('..')")
        host = str(sandbox) + unquoted
        for candidate in (glob.glob(host) if glob.has_magic(host) else [host]):
            if not inside(sandbox, candidate):
                raise PathEscape(f"device path {unquoted!r} leads out of the sandbox (a symlink)")
        return str(sandbox) + token

    return _COMMAND_PATH.sub(replace, command)


def symlink_target(sandbox: Path, link: Path, target: str) -> str:
    """What a symlink pushed to ``link`` may point to: ``target`` inside the sandbox, or PathEscape.

    An absolute target is a device path (``/data/x`` -> ``SANDBOX/data/x``); a relative one
    must not climb out of the sandbox from the link's folder.
    """
    if target.startswith("/"):
        return str(map_device_path(sandbox, target))
    if "\0" in target or not inside(sandbox, os.path.join(os.path.realpath(link.parent), target)):
        raise PathEscape(f"symlink target {target!r} leads out of the sandbox")
    return target


class OutputUnmapper:
    """Turns host paths back into device paths in a byte stream (``SANDBOX/x`` -> ``/x``, ``SANDBOX`` -> ``/``).

    Works across chunk boundaries: a chunk's tail that may be the start of the
    sandbox path is held back until the next chunk (or :meth:`flush`) shows what follows.
    """

    def __init__(self, sandbox: Path) -> None:
        self.prefix = str(sandbox).encode()
        self.pending = b""

    def _map(self, data: bytes) -> bytes:
        return data.replace(self.prefix + b"/", b"/").replace(self.prefix, b"/")

    def feed(self, data: bytes) -> bytes:
        buf = self.pending + data
        keep = 0
        for size in range(min(len(self.prefix), len(buf)), 0, -1):
            if self.prefix.startswith(buf[-size:]):
                keep = size
                break
        self.pending = buf[len(buf) - keep :]
        return self._map(buf[: len(buf) - keep])

    def flush(self) -> bytes:
        out, self.pending = self.pending, b""
        return self._map(out)


# ------------------------------------------------------------------ layout


def write_text_atomically(path: Path, text: str, mode: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    if mode is not None:
        os.chmod(tmp, mode)
    os.replace(tmp, path)


def cpu_max_khz(cpu: int) -> int:
    return LITTLE_MAX_KHZ if cpu < DEVICE_CPUS // 2 else BIG_MAX_KHZ


def cpufreq_dir(sandbox: Path, cpu: int) -> Path:
    return sandbox / "sys" / "devices" / "system" / "cpu" / f"cpu{cpu}" / "cpufreq"


def thermal_zone_dir(sandbox: Path, zone: int = 0) -> Path:
    return sandbox / "sys" / "class" / "thermal" / f"thermal_zone{zone}"


def getprop_script(identity: dict[str, str]) -> str:
    listing = "".join(f"[{name}]: [{value}]\n" for name, value in sorted(identity.items()))
    cases = "".join(f"  {shlex.quote(name)}) printf '%s\\n' {shlex.quote(value)} ;;\n" for name, value in sorted(identity.items()))
    return (
        "#!/bin/sh\n"
        "# getprop stand-in of the Chameleon loopback ADB device: its own identity, never a phone's.\n"
        'if [ "$#" -eq 0 ]; then\n'
        "cat <<'EOF'\n" + listing + "EOF\n"
        "exit 0\nfi\n"
        'case "$1" in\n' + cases + '  *) if [ "$#" -ge 2 ]; then printf \'%s\\n\' "$2"; else echo; fi ;;\n'
        "esac\n"
    )


_MD5SUM = '''\
import hashlib, sys
status = 0
for name in sys.argv[1:] or ["-"]:
    try:
        f = sys.stdin.buffer if name == "-" else open(name, "rb")
        digest = hashlib.md5()
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
        print(f"{digest.hexdigest()}  {name}")
    except OSError as e:
        print(f"md5sum: {name}: {e.strerror}", file=sys.stderr)
        status = 1
sys.exit(status)
'''


def populate(sandbox: Path, identity: dict[str, str]) -> None:
    """Create (or refresh) the device's folders, tools and fake sysfs in ``sandbox``."""
    from harness.fake_device import taskset_standin

    sandbox.mkdir(parents=True, exist_ok=True)
    for sub in ("data/local/tmp", "sdcard", "data/misc/adb", "system/bin", "vendor/lib64", ".loopback"):
        (sandbox / sub).mkdir(parents=True, exist_ok=True)
    bin_dir = sandbox / "system" / "bin"
    write_text_atomically(bin_dir / "getprop", getprop_script(identity), 0o755)
    write_text_atomically(bin_dir / "taskset", f"#!{sys.executable}\n" + Path(taskset_standin.__file__).read_text(), 0o755)
    if shutil.which("md5sum") is None:
        write_text_atomically(bin_dir / "md5sum", f"#!{sys.executable}\n" + _MD5SUM, 0o755)
    # A script, not a symlink to /bin/sh: every path in the sandbox must resolve inside it.
    write_text_atomically(bin_dir / "sh", '#!/bin/sh\nexec /bin/sh "$@"\n', 0o755)

    cpu_root = sandbox / "sys" / "devices" / "system" / "cpu"
    for name in ("online", "possible", "present"):
        write_text_atomically(cpu_root / name, f"0-{DEVICE_CPUS - 1}\n")
    for cpu in range(DEVICE_CPUS):
        top = cpu_max_khz(cpu)
        folder = cpufreq_dir(sandbox, cpu)
        write_text_atomically(cpu_root / f"cpu{cpu}" / "online", "1\n")
        values = {"cpuinfo_max_freq": top, "cpuinfo_min_freq": MIN_KHZ, "scaling_max_freq": top, "scaling_min_freq": MIN_KHZ}
        values.update(scaling_cur_freq=top, cpuinfo_cur_freq=top)
        for name, value in values.items():
            write_text_atomically(folder / name, f"{value}\n")
        write_text_atomically(folder / "scaling_governor", "schedutil\n")
        write_text_atomically(folder / "related_cpus", ("0 1 2 3" if cpu < DEVICE_CPUS // 2 else "4 5 6 7") + "\n")
    zone = thermal_zone_dir(sandbox)
    write_text_atomically(zone / "type", "cpu-thermal\n")
    write_text_atomically(zone / "temp", f"{round(DEFAULT_TEMPERATURE_C * 1000)}\n")

    cpuinfo = "".join(
        f"processor\t: {cpu}\nBogoMIPS\t: 38.40\nCPU part\t: {'0xd05' if cpu < DEVICE_CPUS // 2 else '0xd41'}\n\n" for cpu in range(DEVICE_CPUS)
    )
    write_text_atomically(sandbox / "proc" / "cpuinfo", cpuinfo + f"Hardware\t: {identity.get('ro.board.platform', 'loopback-sim')} (simulated)\n")
