"""The Monsoon source, against a monitor simulated at the USB protocol layer.

The Monsoon package's own code (``HVPM``/``LVPM``, ``pmapi.USB_protocol``'s
control transfers and bulk reads, ``sampleEngine`` with its calibration maths)
runs unmodified; only the USB device under it is simulated.  Captures are
real-time (5 kHz), so each costs its duration.  A host that reads late (a busy
CPU) gets every sample late, in bigger reads, as from a real HVPM's buffer.
"""

from __future__ import annotations

import struct
import threading
import time

import numpy as np
import pytest
from Monsoon import HVPM, sampleEngine
from Monsoon import Operations as op

from harness.energy import monsoon
from harness.energy.monsoon import InvalidMonitorSetting, MonitorUnavailable, MonsoonCaptureError, MonsoonSource
from harness.energy.monsoon_sim import PowerModel, SimulatedMonsoonDevice, SimulatedMonsoonProtocol, simulated_monitor
from harness.energy.monsoon_sim_firmware import _MEASUREMENT
from harness.errors import ChameleonError

IDLE_MA, ACTIVE_MA = 120.0, 850.0  # fine range (< ~250 mA) and coarse range


def _protocol(busy=None, **kwargs) -> SimulatedMonsoonProtocol:
    model = PowerModel(idle_ma=IDLE_MA, active_ma=ACTIVE_MA, voltage_v=4.2, noise_ma=4.0, busy=busy)
    return SimulatedMonsoonProtocol(serial="SIM-0001", power_model=model, **kwargs)


def test_package_runs_on_the_simulated_protocol() -> None:
    """HVPM.Monsoon + setup_usb + setters + status packet + SampleEngine, all the package's own code."""
    busy = threading.Event()
    monitor = simulated_monitor("SIM-0042", PowerModel(idle_ma=IDLE_MA, active_ma=ACTIVE_MA, busy=busy.is_set))
    assert isinstance(monitor, HVPM.Monsoon)
    device = monitor.Protocol.DEVICE
    assert monitor.getSerialNumber() == 42
    monitor.setVout(4.2)
    monitor.setRunTimeCurrentLimit(6.0)
    monitor.setUSBPassthroughMode(op.USB_Passthrough.Off)
    assert device.vout_v == pytest.approx(4.2, abs=1e-6)
    assert device.run_current_limit_a == pytest.approx(6.0, abs=1e-3)
    assert device.usb_passthrough == op.USB_Passthrough.Off
    monitor.fillStatusPacket()
    status = monitor.statusPacket
    assert status.hardwareModel == op.HardwareModel.HVPM
    assert status.runtimeCurrentLimit == pytest.approx(6.0, abs=1e-3)
    assert status.mainFineZeroOffset == -9.0  # a signed EEPROM value, read as such

    engine = sampleEngine.SampleEngine(monitor)
    engine.ConsoleOutput(False)
    engine.startSampling(2500)  # 0.5 s
    samples = engine.getSamples()
    main, volts = np.array(samples[sampleEngine.channels.MainCurrent]), np.array(samples[sampleEngine.channels.MainVoltage])
    assert main.size == volts.size == 2500
    assert main.mean() == pytest.approx(IDLE_MA, rel=0.01)
    assert volts.mean() == pytest.approx(4.2, abs=0.01)
    assert not device.sampling


def test_packets_follow_the_firmware_format() -> None:
    protocol = _protocol(fifo_samples=100)
    protocol.Connect(op.HardwareModel.HVPM, "SIM-0001")
    protocol.sendCommand(op.OpCodes.setMainVoltage, 4.2 * op.Conversion.FLOAT_TO_INT)
    protocol.startSampling(1250, 0xFFFFFFFF)
    assert not protocol.verifyReady(0x02)  # status bit 0x80: sample mode
    first = bytes(protocol.BulkRead())
    dropped, _flags, count = struct.unpack_from("<HBB", first)
    assert (len(first), dropped, count) == (64, 0, 3)
    words = struct.unpack_from(">9H", first, 4)
    assert words[8] & 0x30 == op.SampleType.ZeroCal  # calibration burst first
    time.sleep(0.1)  # 500 samples due, the FIFO holds 100: the rest overflows
    counters = [struct.unpack_from("<H", bytes(protocol.BulkRead()))[0] for _ in range(40)]
    assert counters[0] == 0  # the backlog was taken before the overflow
    assert 350 <= counters[-1] <= protocol.device.dropped_total  # the first sample after it carries the count
    assert counters == sorted(counters)
    with pytest.raises(ValueError, match="Sample Mode"):  # pmapi stops sampling and refuses the command
        protocol.sendCommand(op.OpCodes.setUsbPassthroughMode, 0)
    assert protocol.verifyReady(0x02) and protocol.device.usb_passthrough == op.USB_Passthrough.Auto


def test_prepare_sends_the_settings_and_restore_puts_passthrough_back() -> None:
    protocol = _protocol()
    device = protocol.device
    source = MonsoonSource("SIM-0001", voltage_v=3.9, current_limit_a=6.0, protocol=protocol)
    source.connect()
    assert source.device_serial_number == 1
    source.prepare()
    assert device.vout_v == pytest.approx(3.9, abs=1e-6)
    assert device.run_current_limit_a == pytest.approx(6.0, abs=1e-3)
    assert device.powerup_current_limit_a == pytest.approx(6.0, abs=1e-3)
    assert device.usb_passthrough == op.USB_Passthrough.Off
    assert device.voltage_channel == op.VoltageChannel.Main
    source.restore()
    assert device.usb_passthrough == op.USB_Passthrough.Auto  # as it was before
    source.close()
    assert not device.sampling and device.resets == 1


def test_capture_matches_the_power_model_and_a_busy_window_lines_up_with_host_time() -> None:
    busy = threading.Event()
    protocol = _protocol(busy=busy.is_set, usb_charge_ma=300.0)  # passthrough would hide 300 mA
    edges: dict[str, float] = {}

    def workload() -> None:
        time.sleep(0.7)
        busy.set()
        edges["start"] = time.time()
        time.sleep(0.6)
        busy.clear()
        edges["stop"] = time.time()

    chunks: list[np.ndarray] = []
    with MonsoonSource("SIM-0001", protocol=protocol) as source:
        thread = threading.Thread(target=workload)
        thread.start()
        trace = source.capture(2.0, on_chunk=chunks.append)
        thread.join()
    assert protocol.device.usb_passthrough == op.USB_Passthrough.Auto

    assert trace.sample_rate_hz == 5000.0
    assert trace.samples == 10_000
    assert trace.dropped_samples == 0
    assert len(chunks) >= 10 and sum(c.size for c in chunks) == trace.samples
    assert np.allclose(np.concatenate(chunks), trace.current_ma)
    assert trace.voltage_v.mean() == pytest.approx(4.2, abs=0.01)

    assert trace.start_time_s is not None
    times = trace.start_time_s + trace.times_s
    high = trace.current_ma > (IDLE_MA + ACTIVE_MA) / 2
    rise = times[np.argmax(high)]
    fall = times[len(high) - np.argmax(high[::-1])]
    assert rise == pytest.approx(edges["start"], abs=0.05)
    assert fall == pytest.approx(edges["stop"], abs=0.05)
    idle = trace.current_ma[times < edges["start"] - 0.05]
    active = trace.current_ma[(times > edges["start"] + 0.05) & (times < edges["stop"] - 0.05)]
    assert idle.size > 2000 and active.size > 2000
    assert idle.mean() == pytest.approx(IDLE_MA, rel=0.02)  # fine range
    assert active.mean() == pytest.approx(ACTIVE_MA, rel=0.02)  # coarse range


def _edges(trace, threshold_ma: float) -> tuple[float, float]:
    times = trace.start_time_s + trace.times_s
    high = trace.current_ma > threshold_ma
    return times[np.argmax(high)], times[len(high) - np.argmax(high[::-1])]


def test_a_host_that_reads_late_gets_every_sample_and_the_workload_where_it_happened() -> None:
    """The host stops reading for 3.5 s (more than the 16384-sample FIFO of old held) while the phone works:
    the monitor keeps measuring, hands the backlog over late in big reads, and loses nothing."""
    busy = threading.Event()
    protocol = _protocol(busy=busy.is_set)
    edges: dict[str, float] = {}
    paused: list[bool] = []

    def late_host(chunk: np.ndarray) -> None:
        if not paused:
            paused.append(True)
            time.sleep(3.5)

    def workload() -> None:
        time.sleep(0.4)
        busy.set()
        edges["start"] = time.time()
        time.sleep(0.5)
        busy.clear()
        edges["stop"] = time.time()

    with MonsoonSource("SIM-0001", protocol=protocol) as source:
        thread = threading.Thread(target=workload)
        thread.start()
        trace = source.capture(1.5, on_chunk=late_host)
        thread.join()
    device = protocol.device
    assert paused and trace.samples == 7500
    assert trace.dropped_samples == 0 and device.dropped_total == 0
    assert device.largest_read_packets >= 500  # the backlog came in big reads
    rise, fall = _edges(trace, (IDLE_MA + ACTIVE_MA) / 2)
    assert rise == pytest.approx(edges["start"], abs=0.05)  # measured while nobody read
    assert fall == pytest.approx(edges["stop"], abs=0.05)


def test_a_slow_look_at_the_phone_costs_the_reads_nothing() -> None:
    """``busy`` takes 5 ms (a scan of /proc on a busy machine): the firmware looks at the phone on its own
    time, not once per read, so the host still gets 5000 samples a second."""
    def slow_busy() -> bool:
        time.sleep(0.005)
        return False

    protocol = _protocol(busy=slow_busy)
    with MonsoonSource("SIM-0001", protocol=protocol) as source:
        trace = source.capture(1.0)
    assert trace.samples == 5000 and trace.dropped_samples == 0
    assert trace.current_ma.mean() == pytest.approx(IDLE_MA, rel=0.02)


class _NeverCalibrates(SimulatedMonsoonDevice):
    """Firmware that sends measurements only: the package's start-up loop waits for calibration for ever."""

    def _slot_types(self, slots: np.ndarray) -> np.ndarray:
        return np.full(slots.size, _MEASUREMENT, dtype=np.int64)


def test_a_monitor_whose_packets_hold_no_sample_is_a_stall(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(monsoon, "STALL_PACKETS", 300)  # 0.2 s of packets, not 5 s
    protocol = SimulatedMonsoonProtocol(devices=[_NeverCalibrates("SIM-0001")])
    with MonsoonSource("SIM-0001", protocol=protocol) as source:
        with pytest.raises(MonsoonCaptureError) as info:
            source.capture(30.0)
    message = str(info.value)
    assert "stopped delivering samples (0 of 150000" in message and "\n" not in message
    assert not protocol.device.sampling


def test_dropped_samples_are_reported() -> None:
    protocol = _protocol(drop_every=500)
    with MonsoonSource("SIM-0001", protocol=protocol) as source:
        trace = source.capture(1.0)
    assert trace.samples == 5000
    # one measurement slot in 500 dropped: about 10 over the capture (the counter runs from the first packet)
    assert 8 <= trace.dropped_samples <= 12
    device = protocol.device
    assert trace.dropped_samples == device.last_packet_dropped - device.first_packet_dropped
    assert trace.current_ma.mean() == pytest.approx(IDLE_MA, rel=0.02)


def test_lvpm() -> None:
    protocol = _protocol(hardware="LVPM")
    with MonsoonSource("SIM-0001", model="LVPM", protocol=protocol) as source:
        trace = source.capture(0.5)
        assert protocol.device.run_current_limit_a == pytest.approx(8.0, abs=0.01)
    assert trace.samples == 2500
    assert trace.current_ma.mean() == pytest.approx(IDLE_MA, rel=0.02)
    assert trace.voltage_v.mean() == pytest.approx(4.2, abs=0.01)


def _one_line_error(source: MonsoonSource) -> str:
    with pytest.raises(MonitorUnavailable) as info:
        source.connect()
    message = str(info.value)
    assert "\n" not in message and isinstance(info.value, ChameleonError) and info.value.exit_code == 2
    return message


def test_unknown_serial_or_no_device_is_one_line() -> None:
    assert "NOPE" in _one_line_error(MonsoonSource("NOPE", protocol=_protocol()))
    assert "no Monsoon" in _one_line_error(MonsoonSource(None, protocol=SimulatedMonsoonProtocol(devices=[])))
    hvpm_on_lvpm = _one_line_error(MonsoonSource("SIM-0001", model="HVPM", protocol=_protocol(hardware="LVPM")))
    assert "LVPM" in hvpm_on_lvpm


def test_the_real_usb_path_without_a_monitor_is_one_line() -> None:
    source = MonsoonSource("123456789")  # the package's own pmapi.USB_protocol
    _one_line_error(source)


def test_two_devices_select_by_serial() -> None:
    devices = [SimulatedMonsoonDevice("SIM-0001"), SimulatedMonsoonDevice("SIM-0002")]
    source = MonsoonSource("SIM-0002", protocol=SimulatedMonsoonProtocol(devices=devices))
    source.connect()
    assert source.device_serial_number == 2
    source.close()


def test_invalid_settings() -> None:
    with pytest.raises(InvalidMonitorSetting):
        MonsoonSource(None, voltage_v=20.0)
    with pytest.raises(InvalidMonitorSetting):
        MonsoonSource(None, model="LVPM", current_limit_a=10.0)
    with pytest.raises(InvalidMonitorSetting):
        MonsoonSource(None, model="XVPM")
