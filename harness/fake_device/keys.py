"""Which ADB public keys the loopback device lets in.

A phone asks its user before it trusts a new computer's key; the loopback
device has nobody to ask and runs every command of a trusted client on this
machine as the user who started it.  So it trusts only the keys it is given:
files in the ``adb_keys`` format (one ``base64 user@host`` key a line, as
``~/.android/adbkey.pub``) and key blobs.  The files are read again whenever
an unknown key knocks, so a client whose key pair is created after the device
started (Chameleon's own, or ``adb``'s on its first start) gets in without a
restart.

By default (:func:`default_key_files`) that is the keys of this user's two
ADB clients: Chameleon's transport (``$CHAMELEON_ADB_KEY`` or
``CONFIG/adbkey``, its ``.pub``) and Google's ``adb`` (``~/.android/adbkey.pub``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path

from harness.fake_device import protocol as P
from harness.fake_device.sandbox import FakeDeviceError
from harness.paths import config_dir

Key = tuple[int, int]


def chameleon_key_file() -> Path:
    """The public half of the key pair Chameleon's ADB transport signs with.

    The same rule as :func:`harness.transports.adb.default_key_path` (a test keeps the two
    equal): the device package may import only the base modules, not the transports.
    """
    private = Path(os.environ.get("CHAMELEON_ADB_KEY", config_dir() / "adbkey"))
    return private.with_name(private.name + ".pub")


def adb_client_key_file() -> Path:
    """Google's ``adb`` keeps its key pair in ``$ANDROID_USER_HOME`` or ``~/.android``."""
    return Path(os.environ.get("ANDROID_USER_HOME", Path.home() / ".android")) / "adbkey.pub"


def default_key_files() -> list[Path]:
    return [chameleon_key_file(), adb_client_key_file()]


def read_key_file(path: Path) -> list[Key]:
    """The public keys in an ``adb_keys``-style file; lines that are not keys are skipped (raises OSError)."""
    keys: list[Key] = []
    for line in Path(path).read_bytes().splitlines():
        key = P.parse_public_key(line)
        if key is not None and key not in keys:
            keys.append(key)
    return keys


def check_key_file(path: Path) -> Path:
    """A keys file the user named must exist and hold at least one ADB public key."""
    path = Path(path).expanduser()
    try:
        keys = read_key_file(path)
    except OSError as e:
        raise FakeDeviceError(f"authorized keys file {path}: cannot read it ({e.strerror or e})") from None
    if not keys:
        raise FakeDeviceError(f"authorized keys file {path} holds no ADB public key (one 'base64 user@host' line per key, as adbkey.pub)")
    return path


class AuthorizedKeys:
    """The keys a device accepts: files (read again on every unknown key) and keys given as bytes."""

    def __init__(self, sources: Iterable[Path | str | bytes]) -> None:
        self._lock = threading.Lock()
        self._files: list[Path] = []
        self._from_file: dict[Path, list[Key]] = {}
        self._given: list[Key] = []
        for source in sources:
            self.add(source)

    def add(self, source: Path | str | bytes) -> None:
        """Trust a key (``bytes``: one public key as adbkey.pub holds it) or a keys file (a path; may not exist yet)."""
        if isinstance(source, (bytes, bytearray)):
            key = P.parse_public_key(bytes(source))
            if key is None:
                raise FakeDeviceError("not an ADB public key (expected 'base64 user@host', as adbkey.pub holds)")
            with self._lock:
                if key not in self._given:
                    self._given.append(key)
            return
        path = Path(source).expanduser().absolute()
        with self._lock:
            if path not in self._files:
                self._files.append(path)
        self._read(path)

    def _read(self, path: Path) -> None:
        try:
            keys = read_key_file(path)
        except OSError:
            keys = []  # not there yet: read again when an unknown key knocks
        with self._lock:
            self._from_file[path] = keys

    def reload(self) -> None:
        for path in list(self._files):
            self._read(path)

    def keys(self) -> list[Key]:
        with self._lock:
            found = list(self._given)
            for path in self._files:
                found.extend(k for k in self._from_file.get(path, []) if k not in found)
            return found

    def allows(self, key: Key) -> bool:
        if key in self.keys():
            return True
        self.reload()  # a key pair created since the last look (a client's first run)
        return key in self.keys()

    def summary(self) -> str:
        """One line: how many keys, from where (printed by ``bench fake-device`` at start)."""
        keys = self.keys()
        with self._lock:
            parts = [f"{path}: {len(found)}" if (found := self._from_file.get(path)) else f"{path}: none yet, read again when a client connects"
                     for path in self._files]
            if self._given:
                parts.append(f"given directly: {len(self._given)}")
        return f"authorized keys: {len(keys)} ({'; '.join(parts) or 'none'}); any other key is refused"
