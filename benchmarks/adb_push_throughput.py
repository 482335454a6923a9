"""ADB push throughput: our transport (adb-shell) against Debian's ``adb`` client, on the same loopback device.

Pushes a 10 MB random file with each client in turn, interleaved (ours, adb,
ours, adb, ...) so that a slow moment of this shared machine hits both alike,
and reports the ratio of the median throughputs (goal ≥ 0.5).  The device
copy is deleted before every push, so the checksum skip never applies.

Usage:  python benchmarks/adb_push_throughput.py [--size-mb 10] [--repeats 5] [--json]
Needs Debian's adb (apt-get install adb).  Writes benchmarks/results/adb_push_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    adb = shutil.which("adb")
    if adb is None:
        print("error: Debian's adb client is not installed (apt-get install adb)", file=sys.stderr)
        return 2

    from harness.fake_device import LoopbackAdbDevice
    from harness.transports.adb import AdbTransport

    work = Path(tempfile.mkdtemp(prefix="chameleon-push-"))
    payload = work / "payload.bin"
    payload.write_bytes(np.random.default_rng(0).bytes(int(args.size_mb * 1e6)))
    remote = "/data/local/tmp/payload.bin"
    env = {**os.environ, "HOME": str(work / "home"), "ANDROID_ADB_SERVER_PORT": str(_free_port())}
    (work / "home").mkdir()
    ours, theirs = [], []
    # The device lets in only the two clients timed here: adb (its key appears at its first start) and ours.
    with LoopbackAdbDevice(sandbox=work / "device",
                           authorized_keys=[work / "home" / ".android" / "adbkey.pub", work / "adbkey.pub"]) as device:
        target = device.device_path(remote)
        subprocess.run([adb, "connect", device.address], env=env, capture_output=True, timeout=60, check=True)
        transport = AdbTransport(address=device.address, key_path=work / "adbkey").connect()
        try:
            for _ in range(args.repeats):
                target.unlink(missing_ok=True)
                start = time.perf_counter()
                transport.push(payload, remote)
                ours.append(time.perf_counter() - start)
                assert target.read_bytes() == payload.read_bytes()

                target.unlink(missing_ok=True)
                start = time.perf_counter()
                subprocess.run([adb, "-s", device.address, "push", str(payload), remote], env=env, capture_output=True,
                               timeout=300, check=True)
                theirs.append(time.perf_counter() - start)
                assert target.read_bytes() == payload.read_bytes()
        finally:
            transport.close()
            subprocess.run([adb, "kill-server"], env=env, capture_output=True, timeout=30)
    size_mb = payload.stat().st_size / 1e6
    ours_mbps = size_mb / float(np.median(ours))
    theirs_mbps = size_mb / float(np.median(theirs))
    report = {
        "size_mb": size_mb,
        "repeats": args.repeats,
        "ours_s": ours,
        "adb_s": theirs,
        "ours_median_mb_per_s": ours_mbps,
        "adb_median_mb_per_s": theirs_mbps,
        "ratio": ours_mbps / theirs_mbps,
        "goal": 0.5,
        "note": "ours includes the md5sum check on the device that decides whether to push",
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "adb_push_throughput.json").write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"push {size_mb:.1f} MB: ours {ours_mbps:.1f} MB/s, Debian adb {theirs_mbps:.1f} MB/s "
              f"(medians of {args.repeats}, interleaved) → ratio {report['ratio']:.2f}; goal ≥ 0.5")
    return 0


if __name__ == "__main__":
    sys.exit(main())
