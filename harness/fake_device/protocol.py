"""The ADB wire protocol, as a device (``adbd``) speaks it over TCP.

Written from AOSP's ``protocol.txt``, ``SYNC.TXT`` and ``shell_protocol.h``:

* **Messages.**  A 24-byte little-endian header ``command, arg0, arg1,
  data_length, data_check, magic`` followed by ``data_length`` bytes.  ``magic``
  is ``command ^ 0xffffffff``.  ``data_check`` is the byte *sum* of the payload
  (not a CRC, whatever the field is called); adb >= 1.0.36 neither sends nor
  checks it once both sides speak version 0x01000001, but adb-shell (version
  0x01000000) checks it, so the device always fills it in and never checks it.
* **Connection.**  The host sends ``CNXN(version, maxdata, "host::...")``; the
  device answers ``AUTH(TOKEN, 0, 20 random bytes)``; the host answers
  ``AUTH(SIGNATURE, 0, sig)`` for each of its keys, the device answering a
  fresh token while no known key verifies, then ``AUTH(RSAPUBLICKEY, 0,
  "base64 user@host\\0")``; the device (a user tapping "Allow") answers
  ``CNXN(version, maxdata, "device::props;features=...")``.
* **Streams.**  ``OPEN(local, 0, "service\\0")`` -> ``OKAY(device_local,
  local)`` or ``CLSE(0, local)``; data in ``WRTE``, each answered by one
  ``OKAY`` before the next ``WRTE`` of that stream may be sent; ``CLSE`` ends it.
* **Shell protocol v2** (feature ``shell_v2``): the stream carries packets
  ``id:u8, length:u32 LE, data``; ids stdin 0, stdout 1, stderr 2, exit 3,
  close-stdin 4, window-size-change 5.
* **Sync** (service ``sync:``): requests ``id:4 bytes, length:u32, data``.
"""

from __future__ import annotations

import base64
import hashlib
import struct


def _cmd(name: bytes) -> int:
    return struct.unpack("<I", name)[0]


A_SYNC = _cmd(b"SYNC")
A_CNXN = _cmd(b"CNXN")
A_AUTH = _cmd(b"AUTH")
A_OPEN = _cmd(b"OPEN")
A_OKAY = _cmd(b"OKAY")
A_CLSE = _cmd(b"CLSE")
A_WRTE = _cmd(b"WRTE")
A_STLS = _cmd(b"STLS")

COMMAND_NAMES = {A_SYNC: "SYNC", A_CNXN: "CNXN", A_AUTH: "AUTH", A_OPEN: "OPEN", A_OKAY: "OKAY", A_CLSE: "CLSE", A_WRTE: "WRTE", A_STLS: "STLS"}

A_VERSION_MIN = 0x01000000
A_VERSION_SKIP_CHECKSUM = 0x01000001
A_VERSION = 0x01000001

MAX_PAYLOAD_V1 = 4 * 1024
MAX_PAYLOAD = 256 * 1024  # what this device offers; the host's own maximum may be larger
MAX_ACCEPTED_PAYLOAD = 1024 * 1024  # the largest payload it accepts from a host

AUTH_TOKEN = 1
AUTH_SIGNATURE = 2
AUTH_RSAPUBLICKEY = 3
TOKEN_SIZE = 20

HEADER = struct.Struct("<6I")

# Shell protocol v2 packet ids.
SHELL_STDIN = 0
SHELL_STDOUT = 1
SHELL_STDERR = 2
SHELL_EXIT = 3
SHELL_CLOSE_STDIN = 4
SHELL_WINDOW_SIZE_CHANGE = 5
SHELL_HEADER = struct.Struct("<BI")

# Sync requests and replies.
SYNC_DATA_MAX = 64 * 1024
SYNC_HEADER = struct.Struct("<4sI")


def checksum(data: bytes) -> int:
    return sum(data) & 0xFFFFFFFF


def pack_message(command: int, arg0: int, arg1: int, data: bytes = b"") -> bytes:
    return HEADER.pack(command, arg0 & 0xFFFFFFFF, arg1 & 0xFFFFFFFF, len(data), checksum(data), command ^ 0xFFFFFFFF) + data


def shell_packet(packet_id: int, data: bytes) -> bytes:
    return SHELL_HEADER.pack(packet_id, len(data)) + data


# -------------------------------------------------------------------- RSA keys

ANDROID_PUBKEY_MODULUS_WORDS = 64
_ANDROID_PUBKEY_SIZE = 4 + 4 + 256 + 256 + 4  # words, n0inv, modulus (LE), rr (LE), exponent
# DER DigestInfo prefix of SHA-1: the host signs the 20-byte token as if it were a SHA-1 digest
# (RSA_sign(NID_sha1, token, ...)), i.e. PKCS#1 v1.5 over a "pre-hashed" value.
_SHA1_DIGEST_INFO = bytes.fromhex("3021300906052b0e03021a05000414")


def parse_public_key(blob: bytes) -> tuple[int, int] | None:
    """``(modulus, exponent)`` of an ADB public key (``base64(RSAPublicKey struct) user@host``), or None."""
    text = blob.split(b"\0", 1)[0].strip().split(b" ", 1)[0]
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        return None
    if len(raw) != _ANDROID_PUBKEY_SIZE:
        return None
    words, _n0inv = struct.unpack_from("<2I", raw, 0)
    if words != ANDROID_PUBKEY_MODULUS_WORDS:
        return None
    modulus = int.from_bytes(raw[8:264], "little")
    (exponent,) = struct.unpack_from("<I", raw, 520)
    if modulus <= 0 or exponent <= 1:
        return None
    return modulus, exponent


def key_fingerprint(blob: bytes) -> str:
    """A short name for a public key (MD5 of its decoded struct, as adbd logs it)."""
    text = blob.split(b"\0", 1)[0].strip().split(b" ", 1)[0]
    try:
        raw = base64.b64decode(text)
    except ValueError:
        raw = text
    digest = hashlib.md5(raw).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def verify_signature(key: tuple[int, int], token: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is the PKCS#1 v1.5 / SHA-1 signature of ``token`` by ``key``."""
    modulus, exponent = key
    size = (modulus.bit_length() + 7) // 8
    if len(signature) != size:
        return False
    value = int.from_bytes(signature, "big")
    if value >= modulus:
        return False
    decoded = pow(value, exponent, modulus).to_bytes(size, "big")
    suffix = b"\0" + _SHA1_DIGEST_INFO + token
    padding = size - 2 - len(suffix)
    return padding >= 8 and decoded == b"\0\x01" + b"\xff" * padding + suffix
