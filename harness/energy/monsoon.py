"""A Monsoon power monitor as a live trace source, through Monsoon's own Python package.

ChamNet §4.3: the phone's battery is replaced by a Monsoon at a constant 4.2 V
and the current is sampled every 200 µs (5 kHz).  :class:`MonsoonSource`
drives the package (``monsoon`` 0.1.88: ``HVPM``/``LVPM``, ``pmapi``,
``sampleEngine``) and returns a :class:`~harness.energy.trace.Trace`::

    with MonsoonSource("12345") as mon:          # connect() + prepare()
        trace = mon.capture(20.0, on_chunk=print)
                                                  # restore() + close()

``protocol=None`` uses the real ``pmapi.USB_protocol()``; passing
``harness.energy.monsoon_sim.SimulatedMonsoonProtocol`` runs exactly the same
code against a simulated unit.

How the package is used, and its quirks (it dates from 2018):

* ``setup_usb(serial, Protocol=pmapi.USB_protocol())`` builds its default
  protocol once, at import: we always pass a fresh one.
* ``Monsoon.statusPacket`` is the *class* ``Operations.statusPacket``, shared
  by every monitor object: each of ours gets its own instance.
* ``LVPM.setPowerUpCurrentLimit``/``setRunTimeCurrentLimit`` call a
  name-mangled ``__raw_from_amps`` that does not exist: we send the raw value
  with ``raw_from_amps`` ourselves.
* ``sampleEngine.startSampling`` blocks and only hands samples out at the end
  (``getSamples()``); its periodic API loses a packet per call.  To stream,
  our ``BulkRead`` hook (an attribute of our own monitor object, the package
  is untouched) drains ``getSamples()`` from the sampling thread every 0.1 s:
  draining between batches is lossless.  The hook also reads each packet's
  header, whose first two bytes count the samples the monitor dropped (the
  engine only keeps the last packet's raw value in ``engine.dropped``): their
  increase over the capture, unwrapped modulo 2**16, is
  ``Trace.dropped_samples``.  And it ends a capture that stalls: the engine's
  start-up loop waits forever for calibration samples that never come.  A
  stall is counted in packets, not seconds: ``STALL_PACKETS`` packets in a row
  (5 s of samples) with no new sample out of the engine.  A host too busy to
  read on time is not a stall: the monitor buffers what it measured and hands
  it over late, so a slow capture takes longer and loses nothing, however
  long the host lagged; a monitor that sends nothing at all fails the
  package's 1 s USB read instead.
* The engine's error mode ``full`` turns every exception into a bare
  ``Exception`` and, on a USB error, silently reconnects and restarts the
  capture; we run it with ``ErrorHandlingModes.off`` and turn errors into one
  :class:`MonsoonCaptureError` line.  It prints a line per batch unless
  ``ConsoleOutput(False)``; connecting prints too, which we capture.
* Its time column is the host time each USB packet arrived; sample 0's host
  time is estimated as ``min(arrival - index / 5000)`` over the capture (a
  packet never arrives before its samples were taken, and at least some are
  read promptly), which is ``Trace.start_time_s``.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Callable
from typing import Self

import numpy as np

from harness.energy.trace import Trace
from harness.errors import ChameleonError

SAMPLE_RATE_HZ = 5000.0
MODELS = ("HVPM", "LVPM")
VOLTAGE_RANGE_V = {"HVPM": (0.8, 13.5), "LVPM": (2.01, 4.55)}
CURRENT_LIMIT_MAX_A = {"HVPM": 15.625, "LVPM": 8.0}
DRAIN_INTERVAL_S = 0.1
# Packets in a row that bring the engine no sample before a capture counts as stalled: 5 s of samples,
# 3 a packet.  Packets, not seconds, so that a host that reads late (a busy CPU) is never taken for one.
STALL_PACKETS = round(5.0 * SAMPLE_RATE_HZ / 3)
_PASSTHROUGH_NAMES = {0: "off", 1: "on", 2: "auto"}


class MonitorUnavailable(ChameleonError):
    """No Monsoon can be reached: no device, wrong serial, no USB permission or backend."""


class MonsoonCaptureError(ChameleonError):
    """A capture that started but could not finish."""


class InvalidMonitorSetting(ChameleonError):
    """A voltage, current limit, model or duration the monitor cannot take."""


class _CaptureStalled(Exception):
    pass


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _DropCounter:
    """The packets' 16-bit dropped-sample counter, unwrapped into a count over a capture."""

    def __init__(self) -> None:
        self.last: int | None = None
        self.total = 0
        self.packets = 0

    def update(self, buffer) -> None:
        raw = np.asarray(buffer, dtype=np.uint8)
        starts = np.arange(0, max(raw.size - 3, 0), 64)
        if not starts.size:
            return
        counters = raw[starts].astype(np.int64) | (raw[starts + 1].astype(np.int64) << 8)
        previous = counters[0] if self.last is None else self.last
        self.total += int(np.sum(np.diff(counters, prepend=previous) & 0xFFFF))
        self.last = int(counters[-1])
        self.packets += int(starts.size)


class MonsoonSource:
    """One Monsoon HVPM (or LVPM) measuring the main channel at 5 kHz."""

    def __init__(
        self,
        serial: str | None,
        model: str = "HVPM",
        voltage_v: float = 4.2,
        current_limit_a: float = 8.0,
        protocol=None,
    ) -> None:
        model = str(model).upper()
        if model not in MODELS:
            raise InvalidMonitorSetting(f"Monsoon model must be HVPM or LVPM, got {model!r}")
        low, high = VOLTAGE_RANGE_V[model]
        if not low <= voltage_v <= high:
            raise InvalidMonitorSetting(f"{model} output voltage must be {low}-{high} V, got {voltage_v}")
        if not 0 < current_limit_a <= CURRENT_LIMIT_MAX_A[model]:
            raise InvalidMonitorSetting(
                f"{model} current limit must be in (0, {CURRENT_LIMIT_MAX_A[model]}] A, got {current_limit_a}"
            )
        self.serial = None if serial is None else str(serial)
        self.model = model
        self.voltage_v = float(voltage_v)
        self.current_limit_a = float(current_limit_a)
        self._protocol_arg = protocol
        self.protocol = None
        self.monitor = None
        self.engine = None
        self.device_serial_number: int | None = None
        self.package_messages: list[str] = []
        self._prepared = False
        self._passthrough_before: int | None = None

    # ---------------------------------------------------------------- helpers
    @property
    def _name(self) -> str:
        return f"Monsoon {self.model}" + (f" {self.serial}" if self.serial else "")

    @contextlib.contextmanager
    def _quiet(self):
        """Run package code with its prints captured (kept in ``package_messages``)."""
        buffer = io.StringIO()
        try:
            with contextlib.redirect_stdout(buffer):
                yield
        finally:
            self.package_messages += [line for line in buffer.getvalue().splitlines() if line.strip()]

    @contextlib.contextmanager
    def _device_errors(self, action: str):
        import usb.core

        try:
            yield
        except ChameleonError:
            raise
        except (usb.core.USBError, usb.core.NoBackendError, ValueError, AttributeError, OSError) as exc:
            raise MonitorUnavailable(f"{self._name}: {action} failed ({_one_line(exc)})") from exc

    def _require_connection(self) -> None:
        if self.monitor is None:
            raise MonitorUnavailable(f"{self._name} is not connected (call connect() first)")

    # ------------------------------------------------------------------- API
    def connect(self) -> None:
        """Find the monitor (by serial when given) and open it."""
        try:
            import usb.core
            from Monsoon import HVPM, LVPM, pmapi
            from Monsoon import Operations as op
        except ImportError as exc:  # pragma: no cover - the package is a dependency
            raise MonitorUnavailable(f"the Monsoon Python package is not usable ({_one_line(exc)}); pip install monsoon") from exc

        protocol = self._protocol_arg if self._protocol_arg is not None else pmapi.USB_protocol()
        try:
            serials = [str(s) for s in protocol.enumerateDevices()]
        except usb.core.NoBackendError as exc:
            raise MonitorUnavailable("no USB backend for pyusb (install libusb-1.0), so no Monsoon can be reached") from exc
        except (usb.core.USBError, ValueError, OSError) as exc:
            raise MonitorUnavailable(
                f"cannot list Monsoon monitors on USB ({_one_line(exc)}); check USB permissions (a udev rule for 2ab9:0001)"
            ) from exc
        if not serials:
            raise MonitorUnavailable("no Monsoon power monitor on USB (vendor 2ab9, product 0001)")
        if self.serial is not None and self.serial not in serials:
            raise MonitorUnavailable(f"no Monsoon with serial {self.serial!r} on USB (found: {', '.join(serials)})")

        monitor = HVPM.Monsoon() if self.model == "HVPM" else LVPM.Monsoon()
        monitor.statusPacket = op.statusPacket()  # the package shares one class-level packet between monitors
        try:
            with self._quiet():
                monitor.setup_usb(self.serial, Protocol=protocol)
        except usb.core.USBError as exc:
            hint = "; check USB permissions (a udev rule for 2ab9:0001)" if getattr(exc, "errno", None) == 13 else ""
            raise MonitorUnavailable(f"cannot open {self._name} ({_one_line(exc)}){hint}") from exc
        except (ValueError, OSError) as exc:
            raise MonitorUnavailable(f"cannot open {self._name} ({_one_line(exc)})") from exc
        if getattr(protocol, "DEVICE", None) is None:
            said = f": {self.package_messages[-1]}" if self.package_messages else ""
            raise MonitorUnavailable(f"cannot open {self._name}{said}")
        self.protocol = protocol
        self.monitor = monitor
        with self._device_errors("reading the hardware model"):
            found = protocol.getValue(op.OpCodes.HardwareModel, 2)
            self.device_serial_number = monitor.getSerialNumber()
        expected = op.HardwareModel.HVPM if self.model == "HVPM" else op.HardwareModel.LVPM
        if found != expected:
            names = {op.HardwareModel.HVPM: "an HVPM", op.HardwareModel.LVPM: "an LVPM"}
            self.close()
            raise MonitorUnavailable(f"{self._name} is {names.get(found, f'model {found}')}, not an {self.model}")

    def prepare(self) -> None:
        """Output voltage, current limits, USB passthrough off, main current and voltage channels only."""
        from Monsoon import Operations as op
        from Monsoon import sampleEngine

        self._require_connection()
        monitor, protocol = self.monitor, self.protocol
        with self._device_errors("setting up"):
            if self._passthrough_before is None:
                self._passthrough_before = protocol.getValue(op.OpCodes.setUsbPassthroughMode, 1)
            try:
                monitor.setVout(self.voltage_v)
            except ValueError as exc:
                if "dacCal" in str(exc):  # HVPM.checkDacValues: a unit with bad factory DAC values
                    raise MonitorUnavailable(
                        f"{self._name}: output voltage DAC calibration out of tolerance; update the firmware and run HVPM.calibrateVoltage()"
                    ) from exc
                raise
            raw = monitor.raw_from_amps(self.current_limit_a)
            if self.model == "HVPM":
                monitor.setPowerUpCurrentLimit(self.current_limit_a)
                monitor.setRunTimeCurrentLimit(self.current_limit_a)
            else:  # LVPM's setters call a missing name-mangled helper
                protocol.sendCommand(op.OpCodes.SetPowerUpCurrentLimit, raw)
                protocol.sendCommand(op.OpCodes.SetRunCurrentLimit, raw)
            # Charging through USB would take part of the phone's draw off the main channel.
            monitor.setUSBPassthroughMode(op.USB_Passthrough.Off)
            monitor.setVoltageChannel(op.VoltageChannel.Main)
            monitor.fillStatusPacket()
            status = monitor.statusPacket
        if status.usbPassthroughMode != op.USB_Passthrough.Off:
            raise MonitorUnavailable(f"{self._name} did not turn USB passthrough off (reads {status.usbPassthroughMode})")
        if abs(status.runtimeCurrentLimit - self.current_limit_a) > 0.01 * self.current_limit_a + 0.01:
            raise MonitorUnavailable(
                f"{self._name} did not take the {self.current_limit_a} A current limit (reads {status.runtimeCurrentLimit:.3f} A)"
            )

        engine = sampleEngine.SampleEngine(monitor, errorMode=sampleEngine.ErrorHandlingModes.off)
        engine.ConsoleOutput(False)
        engine.disableCSVOutput()
        channels = sampleEngine.channels
        for channel in (channels.MainCurrent, channels.MainVoltage, channels.timeStamp):
            engine.enableChannel(channel)
        for channel in (channels.USBCurrent, channels.AuxCurrent, channels.USBVoltage):
            engine.disableChannel(channel)
        self.engine = engine
        self._prepared = True

    def capture(self, duration_s: float, on_chunk: Callable[[np.ndarray], None] | None = None) -> Trace:
        """Sample the main channel for ``duration_s`` at 5 kHz (blocks); ``on_chunk`` sees each new
        block of currents (mA) about every 0.1 s."""
        import usb.core

        if not duration_s > 0:
            raise InvalidMonitorSetting(f"capture duration must be > 0 s, got {duration_s}")
        self._require_connection()
        if not self._prepared:
            self.prepare()
        monitor, engine = self.monitor, self.engine
        wanted = max(1, round(duration_s * SAMPLE_RATE_HZ))
        currents: list[np.ndarray] = []
        voltages: list[np.ndarray] = []
        arrivals: list[np.ndarray] = []
        drops = _DropCounter()
        package_bulk_read = monitor.BulkRead
        started = time.time()
        next_drain = started + DRAIN_INTERVAL_S
        packets_at_last_sample = 0

        def drain() -> None:
            nonlocal packets_at_last_sample
            out = engine.getSamples()  # [time, main, usb, aux, main volts, usb volts]; empties the engine's lists
            if not out[1]:
                return
            packets_at_last_sample = drops.packets
            n = min(len(out[0]), len(out[1]), len(out[4]))
            chunk = np.asarray(out[1][:n], dtype=np.float64)
            currents.append(chunk)
            voltages.append(np.asarray(out[4][:n], dtype=np.float64))
            arrivals.append(np.asarray(out[0][:n], dtype=np.float64))
            if on_chunk is not None:
                on_chunk(chunk)

        def bulk_read():
            nonlocal next_drain
            now = time.time()
            if now >= next_drain:
                next_drain = now + DRAIN_INTERVAL_S
                drain()
            if drops.packets - packets_at_last_sample > STALL_PACKETS:
                raise _CaptureStalled()
            buffer = package_bulk_read()
            drops.update(buffer)
            return buffer

        monitor.BulkRead = bulk_read  # instance attribute: the engine calls self.monsoon.BulkRead()
        try:
            engine.startSampling(samples=wanted, granularity=1)
            drain()
        except BaseException as exc:
            with contextlib.suppress(Exception), self._quiet():
                monitor.stopSampling()
            if isinstance(exc, _CaptureStalled):
                raise MonsoonCaptureError(
                    f"{self._name} stopped delivering samples ({sum(map(len, currents))} of {wanted} after "
                    f"{time.time() - started:.1f} s; its last {drops.packets - packets_at_last_sample} packets held none)"
                ) from None
            if isinstance(exc, (usb.core.USBError, ValueError, AttributeError, OSError)):
                raise MonsoonCaptureError(f"{self._name}: capture failed ({_one_line(exc)})") from exc
            raise
        finally:
            del monitor.BulkRead

        current = np.concatenate(currents) if currents else np.zeros(0)
        voltage = np.concatenate(voltages) if voltages else np.zeros(0)
        if current.size == 0:
            raise MonsoonCaptureError(f"{self._name} returned no samples (it never calibrated)")
        arrival = np.concatenate(arrivals)
        engine_start = float(getattr(engine, "_SampleEngine__startTime", started))
        index = np.arange(arrival.size)
        start_time_s = engine_start + float(np.min(arrival - index / SAMPLE_RATE_HZ))
        status = monitor.statusPacket
        return Trace(
            current_ma=current,
            voltage_v=voltage,
            sample_rate_hz=SAMPLE_RATE_HZ,
            start_time_s=start_time_s,
            dropped_samples=drops.total,
            source=f"monsoon:{self.model}:{self.serial or self.device_serial_number}",
            metadata={
                "monitor": self.model,
                "serial": self.serial,
                "device_serial_number": self.device_serial_number,
                "vout_v": self.voltage_v,
                "current_limit_a": self.current_limit_a,
                "usb_passthrough": "off",
                "requested_samples": wanted,
                "capture_called_at": started,
                "start_time_method": "min(packet arrival - index / rate)",
                "packets": drops.packets,
                "engine_dropped_field": int(engine.dropped),
                "firmware_version": status.firmwareVersion,
                "calibration": {
                    "main_fine_scale": status.mainFineScale,
                    "main_coarse_scale": status.mainCoarseScale,
                    "main_fine_zero_offset": status.mainFineZeroOffset,
                    "main_coarse_zero_offset": status.mainCoarseZeroOffset,
                },
            },
        )

    def restore(self) -> None:
        """USB passthrough back to what it was before ``prepare()`` (auto when that was off or unknown)."""
        from Monsoon import Operations as op

        if self.monitor is None:
            return
        mode = self._passthrough_before
        if mode not in (op.USB_Passthrough.On, op.USB_Passthrough.Auto):
            mode = op.USB_Passthrough.Auto
        # A capture cut short (Ctrl-C) leaves the monitor in sample mode, where it refuses every setting.
        with contextlib.suppress(Exception), self._quiet():
            self.monitor.stopSampling()
        with self._device_errors("restoring USB passthrough"), self._quiet():
            self.monitor.setUSBPassthroughMode(mode)
        self._prepared = False

    def close(self) -> None:
        """Stop sampling and release the device (never raises)."""
        monitor, self.monitor = self.monitor, None
        self.engine = None
        self._prepared = False
        if monitor is None:
            return
        with contextlib.suppress(Exception), self._quiet():
            monitor.closeDevice()

    def __enter__(self) -> Self:
        self.connect()
        try:
            self.prepare()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.restore()
        finally:
            self.close()


__all__ = ["SAMPLE_RATE_HZ", "STALL_PACKETS", "InvalidMonitorSetting", "MonitorUnavailable", "MonsoonCaptureError", "MonsoonSource"]
