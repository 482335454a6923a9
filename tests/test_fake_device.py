"""The loopback ADB device against the two real clients: adb-shell and Google's ``adb``.

Every network call and subprocess is bounded by a timeout; the whole file runs
in well under a minute.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess

import pytest

from harness.errors import ChameleonError
from harness.fake_device import FakeDeviceError, LoopbackAdbDevice, PathEscape, standin_benchmark_model_path
from harness.fake_device.protocol import parse_public_key, verify_signature
from harness.fake_device.sandbox import OutputUnmapper, rewrite_command

T = 10.0  # seconds: every adb-shell call
BIG = 10 * 1024 * 1024


@pytest.fixture
def device(tmp_path, signer):
    with LoopbackAdbDevice(sandbox=tmp_path / "sandbox", authorized_keys=[public_key(signer)]) as dev:
        yield dev


@pytest.fixture(scope="module")
def signer(tmp_path_factory):
    keygen = pytest.importorskip("adb_shell.auth.keygen").keygen
    from adb_shell.auth.sign_pythonrsa import PythonRSASigner

    key = tmp_path_factory.mktemp("adbkey") / "adbkey"
    keygen(str(key))
    return PythonRSASigner.FromRSAKeyPath(str(key))


def public_key(signer) -> bytes:
    """The signer's public key as adbkey.pub holds it: what the device is told to let in."""
    key = signer.GetPublicKey()
    return key.encode() if isinstance(key, str) else key


def connect(dev: LoopbackAdbDevice, signer):
    from adb_shell.adb_device import AdbDeviceTcp

    client = AdbDeviceTcp(dev.host, dev.port, default_transport_timeout_s=T)
    client.connect(rsa_keys=[signer], transport_timeout_s=T, auth_timeout_s=T, read_timeout_s=T)
    return client


def connection_errors() -> tuple[type[BaseException], ...]:
    """What adb-shell raises when the device goes away under it."""
    from adb_shell import exceptions

    return (OSError, exceptions.AdbConnectionError, exceptions.AdbTimeoutError, exceptions.TcpTimeoutException, exceptions.InvalidResponseError)


def sh(client, command: str) -> str:
    return client.shell(command, transport_timeout_s=T, read_timeout_s=T, timeout_s=T)


# ------------------------------------------------------------------ no network


def test_paths_map_into_the_sandbox_and_never_out(tmp_path):
    dev = LoopbackAdbDevice(sandbox=tmp_path / "sb")
    sb = dev.sandbox
    assert dev.device_path("/data/local/tmp/x.tflite") == sb / "data/local/tmp/x.tflite"
    assert dev.device_path("/sdcard/a") == sb / "sdcard/a"
    for bad in ("/data/../../etc/passwd", "/data/local/tmp/../../../x", "../x"):
        with pytest.raises(PathEscape):
            dev.device_path(bad)
    assert issubclass(PathEscape, ChameleonError)
    line = "taskset 10 /data/local/tmp/bm --graph=/data/local/tmp/m.tflite > /sdcard/o 2>/dev/null;"
    line += " cat '/sys/class/thermal/thermal_zone0/temp' /proc/cpuinfo"
    assert rewrite_command(sb, line) == (
        f"taskset 10 {sb}/data/local/tmp/bm --graph={sb}/data/local/tmp/m.tflite > {sb}/sdcard/o 2>/dev/null;"
        f" cat '{sb}/sys/class/thermal/thermal_zone0/temp' {sb}/proc/cpuinfo"
    )
    assert rewrite_command(sb, "ls /tmp /dev/null http://x/data/y /database") == "ls /tmp /dev/null http://x/data/y /database"
    with pytest.raises(PathEscape):
        rewrite_command(sb, "cat /data/../etc/passwd")
    unmap = OutputUnmapper(sb)
    text = f"Graph: [{sb}/data/x]\n".encode()
    assert b"".join(unmap.feed(text[i : i + 5]) for i in range(0, len(text), 5)) + unmap.flush() == b"Graph: [/data/x]\n"
    assert unmap.feed(f"cwd {sb}".encode()) + unmap.feed(b"\n") + unmap.flush() == b"cwd /\n"
    with pytest.raises(FakeDeviceError, match="127.0.0.1"):
        LoopbackAdbDevice(host="0.0.0.0")
    assert dev.identity["ro.product.model"] == "Loopback ADB device"
    assert dev.identity["ro.product.manufacturer"] == "Chameleon"


# ------------------------------------------------------------------ adb-shell


def test_adb_shell_session(device, signer, tmp_path):
    client = connect(device, signer)
    assert device.auth_events[-1] == "public_key"  # an authorized key offered for the first time is accepted
    assert sh(client, "echo ok") == "ok\n"
    assert sh(client, "getprop ro.product.model").strip() == "Loopback ADB device"
    assert sh(client, "getprop ro.board.platform").strip() == "loopback-sim"
    assert sh(client, "getprop no.such.prop fallback").strip() == "fallback"
    listing = sh(client, "getprop")
    assert "[ro.product.manufacturer]: [Chameleon]" in listing and "[ro.soc.model]: [none (simulated)]" in listing

    # A failing command: shell v1 merges stderr, and messages show device paths.
    out = sh(client, "cat /data/local/tmp/missing; echo status=$?")
    assert "cat: /data/local/tmp/missing: No such file or directory" in out and "status=1" in out
    assert str(device.sandbox) not in out
    assert "escapes the sandbox" in sh(client, "cat /data/../etc/passwd")

    # The device has 8 CPUs whatever the host has; cpu4 is mapped onto a host CPU.
    assert sh(client, "taskset 0x10 sh -c 'echo pinned'") == "pinned\n"
    call = device.taskset_calls()[-1]
    assert call["mask"] == "0x10" and call["device_cpus"] == [4] and set(call["host_cpus"]) <= os.sched_getaffinity(0)
    assert "Invalid argument" in sh(client, "taskset 0x100 true")
    assert "current affinity mask: 30" in sh(client, "taskset 30 sh -c 'taskset -p $$'")
    assert client.exec_out("getprop ro.product.device", transport_timeout_s=T, read_timeout_s=T, timeout_s=T) == "loopback\n"

    device.set_temperature_c(47.5)
    device.set_cpu_freq_khz(4, 1_200_000)
    assert sh(client, "cat /sys/class/thermal/thermal_zone0/temp").strip() == "47500"
    assert sh(client, "cat /sys/devices/system/cpu/cpu4/cpufreq/scaling_cur_freq").strip() == "1200000"
    assert sh(client, "cat /sys/devices/system/cpu/cpu7/cpufreq/cpuinfo_max_freq").strip().isdigit()

    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(BIG))
    client.push(str(big), "/data/local/tmp/sub/big.bin", transport_timeout_s=T, read_timeout_s=T)
    assert device.device_path("/data/local/tmp/sub/big.bin").read_bytes() == big.read_bytes()
    back = tmp_path / "back.bin"
    client.pull("/data/local/tmp/sub/big.bin", str(back), transport_timeout_s=T, read_timeout_s=T)
    assert back.read_bytes() == big.read_bytes()
    mode, size, _mtime = client.stat("/data/local/tmp/sub/big.bin", transport_timeout_s=T, read_timeout_s=T)
    assert size == BIG and mode & 0o170000 == 0o100000
    names = {bytes(e.filename).decode() for e in client.list("/data/local/tmp/sub", transport_timeout_s=T, read_timeout_s=T)}
    assert "big.bin" in names
    assert sh(client, "md5sum /data/local/tmp/sub/big.bin").split()[1] == "/data/local/tmp/sub/big.bin"
    client.close()


def test_reconnect_after_drops(device, signer):
    client = connect(device, signer)
    assert sh(client, "echo one") == "one\n"
    assert device.drop_connections() == 1
    with pytest.raises(connection_errors()):
        sh(client, "echo two")
    client.close()

    client = connect(device, signer)
    assert device.auth_events[-1] == "signature"  # the key accepted before now verifies
    assert device.auth_events.count("public_key") == 1
    keys = device.device_path("/data/misc/adb/adb_keys").read_bytes().splitlines()
    assert len(keys) == 1 and parse_public_key(keys[0]) is not None  # remembered as on a phone

    device.drop_next_shell_matching("--graph=boom")
    assert sh(client, "echo --graph=fine") == "--graph=fine\n"
    with pytest.raises(connection_errors()):
        sh(client, "echo --graph=boom")
    client.close()
    client = connect(device, signer)
    assert sh(client, "echo --graph=boom") == "--graph=boom\n"  # once only

    device.drop_after(1)  # the next message (this OPEN) is handled, then the connection goes
    with pytest.raises(connection_errors()):
        sh(client, "sleep 5; echo late")
    client.close()
    client = connect(device, signer)
    assert sh(client, "echo three") == "three\n"
    client.close()


def test_signature_check_rejects_a_forgery(signer):
    public = signer.GetPublicKey()
    key = parse_public_key(public.encode() if isinstance(public, str) else public)
    assert key is not None
    token = os.urandom(20)
    signature = signer.Sign(token)
    assert verify_signature(key, token, signature)
    assert not verify_signature(key, os.urandom(20), signature)
    assert not verify_signature(key, token, bytes(len(signature)))


def test_standin_benchmark_model_over_adb(device, signer, tmp_path):
    pytest.importorskip("ai_edge_litert.interpreter")
    tflite_models = pytest.importorskip("harness.models.tflite_models")
    from harness.signature import make_signature

    model = tmp_path / "x.tflite"
    model.write_bytes(tflite_models.build_tflite(make_signature("conv2d", c_in=8, h=8, w=8, c_out=8, kernel=3)))
    standin = standin_benchmark_model_path(tmp_path / "cache")
    assert standin.read_text().startswith("#!") and os.access(standin, os.X_OK)
    assert not device.device_path("/data/local/tmp/benchmark_model").exists()  # not installed by default

    client = connect(device, signer)
    client.push(str(standin), "/data/local/tmp/benchmark_model", transport_timeout_s=T, read_timeout_s=T)
    client.push(str(model), "/data/local/tmp/chameleon/x.tflite", transport_timeout_s=T, read_timeout_s=T)
    sh(client, "chmod 755 /data/local/tmp/benchmark_model")
    flags = "--graph=/data/local/tmp/chameleon/x.tflite --num_threads=1 --warmup_runs=5 --warmup_min_secs=0 --num_runs=11 --min_secs=0 --max_secs=150"
    command = f"taskset 10 /data/local/tmp/benchmark_model {flags} --no_such_flag=1"
    out = client.shell(command, transport_timeout_s=30, read_timeout_s=30, timeout_s=30)
    assert "INFO: STARTING!" in out
    assert "WARN: Unconsumed cmdline flags: --no_such_flag=1" in out
    assert "INFO: Graph: [/data/local/tmp/chameleon/x.tflite]" in out and "INFO: Num threads: [1]" in out
    counts = [int(c) for c in re.findall(r"INFO: count=(\d+) ", out)]
    assert counts == [5, 11]  # --min_secs=0: exactly --num_runs timed runs
    stats = r"count=11 first=\d+ curr=\d+ min=\d+ max=\d+ avg=[\d.e+]+ std=\d+ p5=\d+ median=\d+ p95=\d+"
    assert re.search(stats + r"|count=11 curr=\d+\(all same\) p5=", out)
    assert re.search(r"INFO: Inference timings in us: Init: \d+, First inference: \d+, Warmup \(avg\): [\d.e+]+, Inference \(avg\): [\d.e+]+", out)
    assert device.taskset_calls()[-1]["device_cpus"] == [4]

    hexagon = f"/data/local/tmp/benchmark_model {flags} --use_hexagon=true --hexagon_lib_path=/data/local/tmp/hexagon; echo rc=$?"
    out = client.shell(hexagon, transport_timeout_s=30, read_timeout_s=30, timeout_s=30)
    assert "Could not create Hexagon delegate" in out and "rc=1" in out and "count=" not in out
    sh(client, "mkdir -p /data/local/tmp/hexagon && touch /data/local/tmp/hexagon/libhexagon_interface.so")
    out = client.shell(hexagon, transport_timeout_s=30, read_timeout_s=30, timeout_s=30)
    assert "INFO: Hexagon delegate created." in out and "rc=0" in out and "count=11" in out
    client.close()


# ------------------------------------------------------------ Google's adb client


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("adb") is None, reason="no adb client installed")
def test_debian_adb_client(device, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANDROID_", "ADB_"))}
    env.update(HOME=str(home), ANDROID_ADB_SERVER_PORT=str(_free_port()))

    def adb(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(["adb", *args], check=False, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    serial = device.address
    device.authorize(home / ".android" / "adbkey.pub")  # this adb's key pair, created when its server starts
    try:
        assert adb("start-server").returncode == 0
        connected = adb("connect", serial)
        assert re.search(r"connected to|failed to authenticate", connected.stdout), connected  # first contact: key offered, accepted
        assert adb("-s", serial, "wait-for-device", timeout=20).returncode == 0
        assert "model:Loopback_ADB_device" in adb("devices", "-l").stdout

        ok = adb("-s", serial, "shell", "echo", "ok")
        assert (ok.returncode, ok.stdout) == (0, "ok\n")
        assert adb("-s", serial, "shell", "exit 3").returncode == 3  # shell protocol v2 carries the exit status
        split = adb("-s", serial, "shell", "echo out; echo err >&2")
        assert (split.stdout, split.stderr) == ("out\n", "err\n")
        assert adb("-s", serial, "shell", "getprop ro.product.manufacturer").stdout == "Chameleon\n"

        big = tmp_path / "big.bin"
        big.write_bytes(os.urandom(BIG))
        pushed = adb("-s", serial, "push", str(big), "/data/local/tmp/big.bin", timeout=60)
        assert pushed.returncode == 0, pushed
        assert device.device_path("/data/local/tmp/big.bin").read_bytes() == big.read_bytes()
        back = tmp_path / "back.bin"
        pulled = adb("-s", serial, "pull", "/data/local/tmp/big.bin", str(back), timeout=60)
        assert pulled.returncode == 0, pulled
        assert back.read_bytes() == big.read_bytes()
        missing = adb("-s", serial, "pull", "/data/local/tmp/nothing", str(tmp_path / "n"))
        assert missing.returncode != 0 and "does not exist" in missing.stdout + missing.stderr
    finally:
        try:
            adb("kill-server", timeout=15)
        except subprocess.TimeoutExpired:
            pass
