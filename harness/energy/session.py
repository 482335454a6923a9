"""A lab energy session: the ChamNet protocol on a phone powered by a Monsoon, item by item, resumable.

For each item (an operator signature of a plan, or a model file): push the
model; time a few runs to size the capture; start sampling the monitor; let the
phone idle for ``idle_s`` (the baseline); run the model ``runs`` times back to
back with ``benchmark_model``; keep sampling ``tail_s`` more; find the active
window in the trace, integrate (I − I_idle)·V over it and divide by the runs.

The session folder holds ``manifest.json`` (who, when, device, monitor,
settings, every item with its status and figures), ``results.parquet`` (the
energy store, one row per item) and ``traces/`` (every raw trace, compressed),
each written atomically after every item: a killed session resumes with the
first item not done.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from harness.atomic import write_text_atomically
from harness.energy import store
from harness.energy.analysis import analyze
from harness.energy.monsoon import MonsoonSource
from harness.energy.trace import Trace
from harness.errors import ChameleonError, OutputNotWritable
from harness.measurement import MeasurementSettings
from harness.runners.android_tflite import TfliteBenchmarkRunner
from harness.signature import OpSignature

MANIFEST_VERSION = 1


class SessionError(ChameleonError):
    """A session folder that belongs to another session, or a session that cannot go on."""


@dataclass(frozen=True)
class SessionSettings:
    voltage_v: float = 4.2
    idle_s: float = 18.0  # ChamNet §4.3
    runs: int = 1000  # ChamNet §4.3
    tail_s: float = 2.0  # idle after the runs: a second baseline, so slow drift is interpolated
    probe_runs: int = 5  # timed first, to size the capture


@dataclass
class SessionItem:
    key: str  # the signature string, or the model file's name
    kind: str  # "signature" | "model"
    status: str = "pending"  # pending | done | failed
    result: dict[str, Any] | None = None
    trace_file: str | None = None
    error: str | None = None


@dataclass
class Manifest:
    device_id: str
    device_model: str
    monitor: str
    operator: str
    settings: SessionSettings
    items: list[SessionItem]
    started_at: str
    updated_at: str
    session_id: str
    demo: bool = False
    notes: list[str] = field(default_factory=list)
    version: int = MANIFEST_VERSION

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["items"] = [asdict(item) for item in self.items]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Manifest":
        data = dict(data)
        data["settings"] = SessionSettings(**data["settings"])
        data["items"] = [SessionItem(**item) for item in data["items"]]
        return cls(**data)


class SessionUI:
    """What a session shows and asks; the CLI gives a rich implementation, tests a silent one."""

    def confirm(self, question: str) -> bool:
        return True

    def status(self, message: str) -> None:
        pass

    def current(self, item: str, latest_ma: float) -> None:
        pass

    def item_done(self, item: SessionItem, done: int, total: int) -> None:
        pass


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    write_text_atomically(path, json.dumps(data, indent=2) + "\n")


class EnergySession:
    def __init__(self, folder: Path, runner: TfliteBenchmarkRunner, monitor: MonsoonSource, monitor_label: str,
                 items: Sequence[tuple[str, str, Callable[[], Path]]], settings: SessionSettings,
                 ui: SessionUI | None = None, operator: str | None = None, demo: bool = False) -> None:
        """``items``: (key, kind, local model file) for each measurement, in order."""
        self.folder, self.runner, self.monitor = Path(folder), runner, monitor
        self.settings, self.ui = settings, ui or SessionUI()
        self.models = {key: model for key, _, model in items}
        self.manifest_path = self.folder / "manifest.json"
        self.results_path = self.folder / "results.parquet"
        identity = runner.identity
        if self.manifest_path.exists():
            self.manifest = self._resume(identity.model, monitor_label, [key for key, _, _ in items])
        else:
            check_session_folder(self.folder)
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise OutputNotWritable(f"{self.folder}: cannot create the session folder ({err.strerror or err})") from None
            self.manifest = Manifest(
                device_id=runner.profile.name, device_model=identity.model, monitor=monitor_label,
                operator=operator or getpass.getuser(), settings=settings,
                items=[SessionItem(key=key, kind=kind) for key, kind, _ in items],
                started_at=_now(), updated_at=_now(), session_id=os.urandom(6).hex(), demo=demo,
            )
            self._save()

    def _resume(self, device_model: str, monitor_label: str, keys: list[str]) -> Manifest:
        try:
            manifest = Manifest.from_json(json.loads(self.manifest_path.read_text()))
        except (OSError, ValueError, TypeError, KeyError) as err:
            raise SessionError(f"{self.manifest_path}: not a readable session manifest ({err})") from None
        if manifest.device_id != self.runner.profile.name or manifest.device_model != device_model:
            raise SessionError(f"{self.folder} holds a session of {manifest.device_id} ({manifest.device_model}); give another --out")
        if manifest.settings != self.settings:
            raise SessionError(f"{self.folder} was started with other settings ({manifest.settings}); give another --out")
        if [item.key for item in manifest.items] != keys:
            raise SessionError(f"{self.folder} was started with other items; give another --out")
        manifest.notes.append(f"resumed {_now()} with {sum(i.status == 'done' for i in manifest.items)} items done")
        return manifest

    def _save(self) -> None:
        self.manifest.updated_at = _now()
        _write_json_atomic(self.manifest_path, self.manifest.to_json())

    # ------------------------------------------------------------ running
    def run(self) -> Manifest:
        ui = self.ui
        self.monitor.prepare()  # output voltage, current limit, USB passthrough off
        ui.status(f"monitor ready: {self.settings.voltage_v} V, USB passthrough off; phone {self.manifest.device_model}")
        pending = [item for item in self.manifest.items if item.status != "done"]
        if pending and not ui.confirm("The phone runs from the monitor (battery bypassed) and is reached over Wi-Fi ADB. Start?"):
            raise SessionError("the operator did not confirm the set-up; nothing was measured")
        done = len(self.manifest.items) - len(pending)
        for item in pending:
            try:
                self._measure(item)
                item.status, item.error = "done", None
            except ChameleonError as err:
                item.status, item.error = "failed", str(err)
            self._save()
            done += 1
            ui.item_done(item, done, len(self.manifest.items))
        return self.manifest

    def _measure(self, item: SessionItem) -> None:
        settings, runner, ui = self.settings, self.runner, self.ui
        local = self.models[item.key]()
        remote = f"{runner.device_dir}/models/{local.name}"
        runner.transport.push(local, remote)
        signature = _signature_or_none(item)
        label = signature or _placeholder(item)
        probe = runner.take_batch(label, remote, MeasurementSettings(runs=settings.probe_runs, min_timed_s=0.0,
                                                                    warmup_runs=1, rounds=1), 1)
        per_run_s = probe.median_us / 1e6
        # Generous capture: idle, the runs (with the tool's start-up), a tail; the analysis finds the window.
        duration = settings.idle_s + settings.runs * per_run_s * 1.5 + 3.0 + settings.tail_s
        captured: dict[str, Any] = {}

        def capture() -> None:
            try:
                captured["trace"] = self.monitor.capture(duration, on_chunk=lambda chunk: ui.current(item.key, float(chunk[-1])) if len(chunk) else None)
            except BaseException as err:  # reported on the main thread
                captured["error"] = err

        thread = threading.Thread(target=capture, daemon=True)
        thread.start()
        ui.status(f"{item.key}: idle {settings.idle_s:g} s for the baseline, then {settings.runs} runs")
        _sleep(settings.idle_s)
        host_start = time.time()
        runner.run_tool(runner.command(remote, 0, settings.runs, 0.0), label)  # exactly `runs`, no warm-up
        host_end = time.time()
        while thread.is_alive():
            thread.join(WAKE_S)
        if "error" in captured:
            error = captured["error"]
            raise error if isinstance(error, ChameleonError) else SessionError(f"capture failed: {error}")
        trace: Trace = captured["trace"]
        t0 = trace.start_time_s or host_start
        host_window = (host_start - t0, host_end - t0)
        result = analyze(trace, settings.runs, idle_s=settings.idle_s, host_window=host_window)
        trace_name = f"traces/{(signature.digest if signature else Path(item.key).stem)}.npz"
        store.save_trace(trace, self.folder / trace_name)
        row = store.result_row(
            result, device_id=self.manifest.device_id, device_model=self.manifest.device_model, monitor=self.manifest.monitor,
            session_id=self.manifest.session_id, sample_rate_hz=trace.sample_rate_hz, voltage_v=settings.voltage_v,
            signature=signature, arch_id=None if signature else Path(item.key).stem, idle_s=settings.idle_s,
            host_window=host_window, trace_file=trace_name,
        )
        store.append_results(self.results_path, [row])
        item.result, item.trace_file = result.to_json(), trace_name


# The main thread waits in slices of this: Python runs a Ctrl-C or SIGTERM handler only in the main thread, and
# when the kernel hands the signal to another thread (the capture's), a long sleep or join there is not cut short.
WAKE_S = 0.2


def _sleep(seconds: float) -> None:
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(left, WAKE_S))


def _signature_or_none(item: SessionItem) -> OpSignature | None:
    if item.kind != "signature":
        return None
    from harness.signature import parse_signature

    return parse_signature(item.key)


def _placeholder(item: SessionItem) -> OpSignature:
    """A stand-in signature for a model-file item: the runner only uses it to name the item in errors."""
    from harness.signature import make_signature

    return make_signature("identity")


# ------------------------------------------------------------------ set-up
def check_session_folder(folder: Path) -> Path:
    """Refuse, before any set-up, a session folder that cannot be one: a file, or a path through a file.

    Checked first because the lab set-up (phone, monitor) takes a minute and
    the folder is only written after it; nothing is created or touched here.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputNotWritable(f"{folder}: is a file, not a folder; --out names the session folder "
                                "(manifest.json, results.parquet, traces/ go inside it)")
    blocking = next((parent for parent in folder.parents if parent.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise OutputNotWritable(f"{folder}: {blocking} is a file, not a folder")
    manifest = folder / "manifest.json"
    if manifest.exists() and not manifest.is_file():
        raise OutputNotWritable(f"{manifest}: is not a file; this folder cannot hold a session")
    return folder


def plan_items(plan: Any, profile: Any) -> list[tuple[str, str, Callable[[], Path]]]:
    """One item per signature of the plan in a dtype the device takes; the model is built when its turn comes.

    Signatures too big for the device (its ``memory_limit_mb``) are refused here, before the set-up.
    """
    from harness.models import tflite_models
    from harness.profiles import check_fits_memory

    def model(signature: OpSignature) -> Callable[[], Path]:
        return lambda: tflite_models.tflite_model_file(signature)

    signatures = [s for s in plan.signatures if s.dtype in profile.dtypes]
    check_fits_memory(profile, signatures, f"plan {plan.name}")
    return [(s.key, "signature", model(s)) for s in signatures]


def model_items(folder: Path) -> list[tuple[str, str, Callable[[], Path]]]:
    files = sorted(Path(folder).glob("*.tflite")) if Path(folder).is_dir() else []
    if not files:
        raise SessionError(f"{folder}: no .tflite models to measure")
    return [(f.name, "model", (lambda f=f: f)) for f in files]


def loopback_busy(sandbox: Path, cache_s: float = 0.01, root_pid: int | None = None) -> Callable[[], bool]:
    """True while the loopback phone runs benchmark_model: the simulated monitor's power model follows it.

    The loopback device runs its commands as processes of this machine; one
    whose command line names the device's sandbox and benchmark_model is the
    phone computing.  (It includes the stand-in's own start-up, about 0.5 s,
    which a real phone spends loading the model.)  With ``root_pid`` (the
    process serving the loopback device) only its descendants are looked at:
    a handful of files instead of every process of a busy machine, which the
    monitor's poller would otherwise read a hundred times a second.
    """
    marker, tool = str(sandbox).encode(), b"benchmark_model"
    state = {"at": 0.0, "busy": False}

    def is_the_tool(pid: str) -> bool:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                cmdline = handle.read()
        except OSError:
            return False
        return tool in cmdline and marker in cmdline and b"--graph" in cmdline

    def descendants(pid: int) -> list[str] | None:
        """Every process below ``pid`` (None when this kernel does not list children)."""
        found, todo = [], [str(pid)]
        while todo:
            parent = todo.pop()
            try:
                tasks = os.listdir(f"/proc/{parent}/task")
            except OSError:
                continue
            for task in tasks:
                try:
                    with open(f"/proc/{parent}/task/{task}/children", "rb") as handle:
                        children = handle.read().split()
                except FileNotFoundError:
                    if parent == str(pid):
                        return None
                    continue
                except OSError:
                    continue
                todo += [c.decode() for c in children]
                found += [c.decode() for c in children]
        return found

    def busy() -> bool:
        now = time.monotonic()
        if now - state["at"] >= cache_s:
            pids = descendants(root_pid) if root_pid is not None else None
            if pids is None:
                pids = [entry.name for entry in os.scandir("/proc") if entry.name.isdigit()]
            state["at"], state["busy"] = now, any(is_the_tool(pid) for pid in pids)
        return state["busy"]

    return busy


DEMO_SANDBOX_PREFIX = "chameleon-demo-phone-"


def demo_sandbox() -> Path:
    """A new folder for the demo phone's filesystem, named after this process (``chameleon-demo-phone-PID-*``).

    The session removes it on every way out but SIGKILL; what a killed session
    left is removed here, by the next demo: this user's sandboxes whose
    process is gone.
    """
    import tempfile

    root = Path(tempfile.gettempdir())
    for folder in root.glob(f"{DEMO_SANDBOX_PREFIX}*-*"):
        pid = folder.name[len(DEMO_SANDBOX_PREFIX):].split("-", 1)[0]
        try:
            if not pid.isdigit() or folder.stat().st_uid != os.getuid() or _alive(int(pid)):
                continue
        except OSError:
            continue
        shutil.rmtree(folder, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{DEMO_SANDBOX_PREFIX}{os.getpid()}-"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


class lab_setup:
    """The phone (over Wi-Fi ADB) and the monitor, checked and connected; released on exit.

    ``demo``: a simulated Monsoon whose power model follows what the phone runs;
    without ``adb``, a loopback ADB device started here plays the phone, in a
    temporary folder (:func:`demo_sandbox`) removed on exit, whatever the way
    out (an error, Ctrl-C, SIGTERM made a Ctrl-C by the CLI).
    """

    def __init__(self, profile: Any, adb: str | None, monsoon_serial: str | None, demo: bool, voltage_v: float,
                 ui: SessionUI) -> None:
        self.profile, self.adb, self.serial, self.demo, self.voltage_v, self.ui = profile, adb, monsoon_serial, demo, voltage_v, ui
        self.loopback = None
        self.runner = None
        self.monitor = None
        self.sandbox: Path | None = None  # the demo phone's folder: removed on exit

    def __enter__(self) -> tuple[Any, MonsoonSource, str]:
        from harness.runners.android import transport_for

        try:
            return self._enter(transport_for)
        except BaseException:
            self.__exit__()
            raise

    def _enter(self, transport_for: Callable[[Any], Any]) -> tuple[Any, MonsoonSource, str]:
        profile, ui = self.profile, self.ui
        sandbox = None
        adb = self.adb
        if self.demo and adb is None:
            from harness.fake_device import LoopbackAdbDevice
            from harness.fake_device.device import install_standin_tools

            sandbox = self.sandbox = demo_sandbox()
            self.loopback = LoopbackAdbDevice(sandbox=sandbox).start()
            install_standin_tools(self.loopback)
            adb = self.loopback.address
            ui.status(f"demo: a loopback phone on {adb} (sandbox {sandbox}) stands in for {profile.name}")
        if adb is None:
            if profile.transport.address is None:
                raise SessionError(f"device {profile.name!r}: an energy session reaches the phone over Wi-Fi ADB "
                                   "(USB would charge it): give --adb HOST:PORT")
            adb = profile.transport.address
        if ":" not in adb:
            raise SessionError(f"--adb {adb!r}: an energy session needs Wi-Fi ADB (HOST:PORT); USB would charge the phone")
        profile = replace(profile, transport=replace(profile.transport, address=adb, serial=None))
        self.runner = TfliteBenchmarkRunner(profile, transport_for(profile))
        ui.status(f"phone: {self.runner.identity.model} over {adb}")
        if self.demo:
            from harness.energy.monsoon_sim import PowerModel, SimulatedMonsoonProtocol

            serial = self.serial or "SIM-0001"
            busy = (loopback_busy(sandbox, root_pid=os.getpid()) if sandbox is not None
                    else loopback_busy(Path("/data/local/tmp")))
            model = PowerModel(idle_ma=120.0, active_ma=850.0, voltage_v=self.voltage_v, noise_ma=8.0, busy=busy)
            self.monitor = MonsoonSource(serial, voltage_v=self.voltage_v, protocol=SimulatedMonsoonProtocol(serial=serial, power_model=model))
            label = f"Monsoon HVPM serial {serial} (simulated)"
        else:
            self.monitor = MonsoonSource(self.serial, voltage_v=self.voltage_v)
            label = f"Monsoon HVPM serial {self.serial or '(first found)'}"
        self.monitor.connect()
        ui.status(f"monitor: {label}")
        return self.runner, self.monitor, label

    def __exit__(self, *exc: object) -> None:
        """Release everything, each part even when another fails or a second Ctrl-C comes; that one is re-raised."""
        interrupted: BaseException | None = None
        for close in (lambda: self.monitor and self.monitor.restore(), lambda: self.monitor and self.monitor.close(),
                      lambda: self.runner and self.runner.close(), lambda: self.loopback and self.loopback.stop(),
                      self._remove_sandbox):
            try:
                close()
            except Exception:  # releasing one part must not keep the others held
                pass
            except BaseException as err:  # KeyboardInterrupt: finish releasing first
                interrupted = interrupted or err
        if interrupted is not None:
            if self.sandbox is not None:  # the interrupt came in the middle of removing it
                self._remove_sandbox()
            raise interrupted

    def _remove_sandbox(self) -> None:
        if self.sandbox is not None:
            shutil.rmtree(self.sandbox, ignore_errors=True)
            self.sandbox = None
