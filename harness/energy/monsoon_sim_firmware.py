"""The firmware of a simulated Monsoon monitor, shaped like a ``usb.core.Device``.

:class:`SimulatedMonsoonDevice` answers the control transfers and bulk reads
that the Monsoon package's own ``pmapi.USB_protocol`` code issues (the USB
bus around it is :class:`harness.energy.monsoon_sim.SimulatedMonsoonProtocol`):

Control transfers
    ``ctrl_transfer(0x40, 0x01, wValue, wIndex, data)`` sets an EEPROM value:
    opcode = ``wIndex & 0xFF``, value = ``wValue | (wIndex >> 8) << 16`` (24
    bits, as the firmware reads it); ``ctrl_transfer(0xC0, 0x01, 0, opcode, 4)``
    reads one back as 4 little-endian bytes; ``0x02`` starts sampling
    (``wValue`` = calibration interval in ms, data = sample limit), ``0x03``
    stops.  The status opcode ``0xC4`` has bit 0x80 set in sample mode, which
    ``pmapi.verifyReady`` checks; setting values in sample mode stalls.

Sample packets (bulk endpoint 0x81, 64 bytes)
    bytes 0-1 the dropped-sample counter (little-endian, cumulative since
    sampling started, wrapping at 2**16), byte 2 flags (0), byte 3 the number
    of samples (1-3), then up to three 18-byte samples of nine big-endian
    16-bit words: main coarse, main fine, USB coarse, USB fine, aux coarse, aux
    fine current, main voltage, USB voltage, and a word whose low byte is the
    sample type (0x00 measurement, 0x10 zero calibration, 0x30 reference
    calibration).  ``swizzlePacket`` swaps the byte pairs after the header and
    unpacks them natively, which is how the package reads them (unsigned for
    the HVPM, signed currents for the LVPM).

Calibration
    The firmware starts with a burst of alternating zero/reference calibration
    samples (the package wants five of each on all three channels before it
    converts anything) and then puts one zero and one reference sample every
    ``calTime`` ms in place of a measurement.  Each current range of the
    simulated hardware has a gain (ADC ticks per mA), a zero level and a
    reference current; a zero-calibration sample reads the zero level minus
    the unit's zero error, a reference sample reads the zero level plus the
    reference current, and the EEPROM holds the scale (the reference current:
    mA for coarse, µA for fine) and the zero error (HVPM zero offsets, signed)
    so that the package's maths, ``(raw - (zeroOffset + zeroCal)) * scale /
    (refCal - (zeroOffset + zeroCal))`` (``/1000`` for fine), gives back the
    simulated current.  Fine or coarse is the package's choice: it uses the
    fine reading while it is below ``fineThreshold`` (64000 HVPM, 30000 LVPM),
    which the fine range reaches at about 250 mA here.  Voltage words are
    ``volts / (62.5 µV * 4)`` (HVPM; ``* 2`` LVPM and USB).

Time
    Sample slot ``k`` is taken at ``t0 + k / 5000`` s of wall-clock time after
    ``startSampling``: the firmware produces samples by elapsed time, however
    often the host reads.  A bulk read returns the packets that are due,
    sleeping (not spinning) until at least one full packet is: one packet to a
    host that keeps up, every packet waiting (up to ``BATCH_MAX_PACKETS``, as
    one buffer of 64-byte packets) to a host that fell behind, the way a real
    HVPM's buffer hands its backlog over late instead of losing it.  The
    calibration burst goes out one packet per read, because the package's
    start-up loop throws away whatever else a read brought once it is
    calibrated.  Samples wait in a FIFO (``fifo_samples``, a minute by
    default: the monitor's buffer and the host's USB queue); a host further
    behind than that loses the overflow, counted as dropped, and
    ``drop_every=N`` drops every N-th measurement slot on purpose, so
    dropped-sample handling can be tested.

The phone
    The current comes from :class:`PowerModel`, whose ``busy`` callable a
    thread of the firmware polls every ``BUSY_POLL_S`` while sampling (the
    hardware measures the phone whether or not the host reads); each sample
    takes the state at its own time, so a workload the host starts in
    parallel shows up where it happened even when the samples are read late,
    and a slow ``busy`` (a scan of ``/proc``) costs the reads nothing.

Imports: ``numpy``, ``usb.core``, the ``Monsoon`` package's ``Operations``
constants and :mod:`harness.energy.monsoon_sim_power`.
"""

from __future__ import annotations

import array
import re
import struct
import threading
import time
import zlib
from collections import deque

import numpy as np
import usb.core
from Monsoon import Operations as op

from harness.energy.monsoon_sim_power import (HVPM_SPEC, LVPM_RESISTOR_OFFSETS, LVPM_SPEC, PowerModel,
                                              hvpm_amps_from_raw, hvpm_raw_from_amps, lvpm_amps_from_raw,
                                              lvpm_raw_from_amps)

SAMPLE_RATE_HZ = 5000.0
PACKET_BYTES = 64
SAMPLE_BYTES = 18
MAX_SAMPLES_PER_PACKET = 3
ADC_VOLTS_PER_TICK = 62.5e-6
FLOAT_TO_INT = op.Conversion.FLOAT_TO_INT
CALIBRATION_BURST = 8  # zero/reference pairs at the start of sample mode
BATCH_MAX_PACKETS = 1024  # the most one bulk read hands a late host: 0.6 s of samples
BUSY_POLL_S = 0.005  # how often the phone's state is looked at while sampling
FIFO_SECONDS = 60.0  # the default FIFO: how far behind a host may fall before samples are lost

_MEASUREMENT = op.SampleType.Measurement
_ZERO_CAL = op.SampleType.ZeroCal
_REF_CAL = op.SampleType.refCal


def _serial_to_int(serial: str) -> int:
    """The 16-bit EEPROM serial number behind a USB serial string."""
    digits = re.sub(r"\D", "", serial)
    if digits:
        return int(digits) & 0xFFFF
    return zlib.crc32(serial.encode()) & 0xFFFF


def _stall(what: str) -> usb.core.USBError:
    return usb.core.USBError(f"Pipe error ({what})", errno=32)


class SimulatedMonsoonDevice:
    """The firmware of one simulated monitor, shaped like a ``usb.core.Device``.

    Keeps every setting it is sent (``vout_v``, ``run_current_limit_a``,
    ``powerup_current_limit_a``, ``usb_passthrough``, ``voltage_channel``; the
    raw EEPROM in ``eeprom``, every set command in ``commands``) so tests can
    check them, and counts the samples it dropped in ``dropped_total`` (and the
    counter it sent in its first and last packets: ``first_packet_dropped``,
    ``last_packet_dropped``), the samples and packets it sent (``samples_sent``,
    ``packets_sent``) and the bulk reads that carried them (``reads``, and the
    most packets in one, ``largest_read_packets``).
    """

    idVendor = 0x2AB9
    idProduct = 0x0001

    def __init__(
        self,
        serial: str = "SIM-0001",
        power_model: PowerModel | None = None,
        *,
        hardware: str = "HVPM",
        drop_every: int | None = None,
        fifo_samples: int | None = None,
        usb_charge_ma: float = 0.0,
        firmware_version: int = op.ReturnCodes.CURRENT_FIRMWARE_REV,
        sample_rate_hz: float = SAMPLE_RATE_HZ,
        seed: int | None = 0,
    ) -> None:
        kind = hardware.upper()
        if kind not in ("HVPM", "LVPM"):
            raise ValueError(f"hardware must be HVPM or LVPM, got {hardware!r}")
        if drop_every is not None and drop_every < 1:
            raise ValueError(f"drop_every must be >= 1, got {drop_every}")
        self.spec = HVPM_SPEC if kind == "HVPM" else LVPM_SPEC
        self.serial_number = str(serial)
        self.power_model = power_model if power_model is not None else PowerModel()
        self.drop_every = drop_every
        self.fifo_samples = int(fifo_samples) if fifo_samples is not None else round(FIFO_SECONDS * sample_rate_hz)
        self.usb_charge_ma = float(usb_charge_ma)
        self.sample_rate_hz = float(sample_rate_hz)
        self.attached = True
        self.tripped = False  # over-current protection cut the output
        self.commands: list[tuple[int, int]] = []
        self.resets = 0
        self._rng = np.random.default_rng(seed)
        self._lock = threading.RLock()
        self.eeprom: dict[int, int] = self._factory_eeprom(firmware_version)
        # sample mode
        self.sampling = False
        self.cal_time_ms = 0
        self.max_samples = 0xFFFFFFFF
        self.dropped_total = 0
        self.samples_sent = 0
        self.packets_sent = 0
        self.first_packet_dropped = None  # the dropped-sample counter in the first and last packets sent
        self.last_packet_dropped = None
        self._t0 = 0.0
        self._next_slot = 0
        self.reads = 0  # bulk reads answered, and the most packets one of them carried
        self.largest_read_packets = 0
        # The FIFO: chunks of (18-byte records, dropped-sample counters, slot numbers), oldest first.
        self._fifo: deque[tuple[np.ndarray, np.ndarray, np.ndarray]] = deque()
        self._fifo_len = 0
        # The phone's state over time: when it changed, and to what (polled by a thread while sampling).
        self._busy_times: list[float] = []
        self._busy_states: list[bool] = []
        self._poller_stop = threading.Event()

    # ---------------------------------------------------------------- EEPROM
    def _factory_eeprom(self, firmware_version: int) -> dict[int, int]:
        spec = self.spec
        hv = spec.model == op.HardwareModel.HVPM
        limit = hvpm_raw_from_amps(8.0) if hv else lvpm_raw_from_amps(8.0)
        e = {
            op.OpCodes.FirmwareVersion: firmware_version,
            op.OpCodes.ProtocolVersion: 25,
            op.OpCodes.HardwareModel: spec.model,
            op.OpCodes.getSerialNumber: _serial_to_int(self.serial_number),
            op.OpCodes.SetPowerUpCurrentLimit: limit,
            op.OpCodes.SetRunCurrentLimit: limit,
            op.OpCodes.setPowerupTime: 100,
            op.OpCodes.setTemperatureLimit: 50 << 8,  # 50 °C, the firmware's swapped Q7.8
            op.OpCodes.setUsbPassthroughMode: op.USB_Passthrough.Auto,
            op.OpCodes.setVoltageChannel: 0,
            op.OpCodes.setMainVoltage: 0,  # output off until the host sets Vout
            op.OpCodes.dacCalLow: 0xE000,
            op.OpCodes.dacCalHigh: 0xC800,
        }
        mc, mf, uc, uf, ac, af = spec.ranges
        if hv:
            e.update(
                {
                    op.OpCodes.setMainCoarseScale: round(mc.ref_ma),
                    op.OpCodes.setMainFineScale: round(mf.ref_ma * 1000),
                    op.OpCodes.setUSBCoarseScale: round(uc.ref_ma),
                    op.OpCodes.setUSBFineScale: round(uf.ref_ma * 1000),
                    op.OpCodes.setAuxCoarseScale: round(ac.ref_ma),
                    op.OpCodes.setAuxFineScale: round(af.ref_ma * 1000),
                    op.OpCodes.SetMainCoarseZeroOffset: mc.zero_error & 0xFFFF,
                    op.OpCodes.SetMainFineZeroOffset: mf.zero_error & 0xFFFF,
                    op.OpCodes.SetUSBCoarseZeroOffset: uc.zero_error & 0xFFFF,
                    op.OpCodes.SetUSBFineZeroOffset: uf.zero_error & 0xFFFF,
                }
            )
        else:
            e.update({int(k): v for k, v in LVPM_RESISTOR_OFFSETS.items()})
        return {int(k): int(v) for k, v in e.items()}

    def _amps_from_raw(self, raw: int) -> float:
        if self.spec.model == op.HardwareModel.HVPM:
            return hvpm_amps_from_raw(raw)
        return lvpm_amps_from_raw(raw)

    @property
    def vout_v(self) -> float:
        return self.eeprom[op.OpCodes.setMainVoltage] / FLOAT_TO_INT

    @property
    def run_current_limit_a(self) -> float:
        return self._amps_from_raw(self.eeprom[op.OpCodes.SetRunCurrentLimit])

    @property
    def powerup_current_limit_a(self) -> float:
        return self._amps_from_raw(self.eeprom[op.OpCodes.SetPowerUpCurrentLimit])

    @property
    def usb_passthrough(self) -> int:
        return self.eeprom[op.OpCodes.setUsbPassthroughMode]

    @property
    def voltage_channel(self) -> int:
        return self.eeprom[op.OpCodes.setVoltageChannel]

    @property
    def output_on(self) -> bool:
        return self.vout_v > 0.5 and not self.tripped

    # ----------------------------------------------------- usb.core.Device API
    def ctrl_transfer(self, bmRequestType, bRequest, wValue=0, wIndex=0, data_or_wLength=None, timeout=None):
        with self._lock:
            self._check_attached()
            if bmRequestType == op.Control_Codes.USB_IN_PACKET:
                if bRequest != op.Control_Codes.USB_SET_VALUE:
                    raise _stall(f"unknown IN request {bRequest:#x}")
                length = int(data_or_wLength or 0)
                value = self._get_value(wIndex & 0xFF)
                return array.array("B", struct.pack("<I", value & 0xFFFFFFFF)[:length])
            if bmRequestType != op.Control_Codes.USB_OUT_PACKET:
                raise _stall(f"unknown request type {bmRequestType:#x}")
            data = bytes(data_or_wLength) if isinstance(data_or_wLength, (bytes, bytearray, array.array, tuple, list)) else b""
            if bRequest == op.Control_Codes.USB_SET_VALUE:
                if self.sampling:
                    raise _stall("command in sample mode")
                self._set_value(wIndex & 0xFF, (wValue & 0xFFFF) | (((wIndex >> 8) & 0xFF) << 16))
            elif bRequest == op.Control_Codes.USB_REQUEST_START:
                if self.sampling:
                    raise _stall("start in sample mode")
                max_samples = struct.unpack("<I", data[:4])[0] if len(data) >= 4 else 0xFFFFFFFF
                self._start(wValue & 0xFFFF, max_samples)
            elif bRequest == op.Control_Codes.USB_REQUEST_STOP:
                self._advance(time.monotonic())
                self._stop_sampling()
            elif bRequest == op.Control_Codes.USB_REQUEST_RESET_TO_BOOTLOADER:
                self._stop_sampling()
                self.attached = False
                raise usb.core.USBError("No such device (it left for the bootloader)", errno=19)
            else:
                raise _stall(f"unknown OUT request {bRequest:#x}")
            return len(data)

    def read(self, endpoint, size_or_buffer, timeout=None):
        """The bulk IN endpoint: the packets that are due (at least one full one; a late host gets its backlog)."""
        if endpoint != 0x81:
            raise _stall(f"no endpoint {endpoint:#x}")
        deadline = time.monotonic() + (timeout if timeout else 1000) / 1000.0
        while True:
            now = time.monotonic()
            with self._lock:
                self._check_attached()
                self._advance(now)
                if self._fifo_len >= MAX_SAMPLES_PER_PACKET or (self._fifo_len and not self.sampling):
                    return self._packets()
                if self.sampling:
                    missing = MAX_SAMPLES_PER_PACKET - self._fifo_len
                    wake = self._t0 + (self._next_slot + missing) / self.sample_rate_hz
                else:
                    wake = deadline
            if now >= deadline:
                raise usb.core.USBTimeoutError("Operation timed out", errno=110)
            time.sleep(min(max(wake - now, 0.0001), max(deadline - now, 0.0)))

    def reset(self) -> None:
        with self._lock:
            self._check_attached()
            self._stop_sampling()
            self._fifo.clear()
            self._fifo_len = 0
            self.resets += 1

    def _check_attached(self) -> None:
        if not self.attached:
            raise usb.core.USBError("No such device (it may have been disconnected)", errno=19)

    # -------------------------------------------------------------- firmware
    def _get_value(self, opcode: int) -> int:
        if opcode == op.OpCodes.getStartStatus:
            return 0x80 if self.sampling else 0x00
        return self.eeprom.get(opcode, 0)

    def _set_value(self, opcode: int, value: int) -> None:
        self.commands.append((opcode, value))
        if opcode == op.OpCodes.setMainVoltage:
            self.tripped = False
        elif opcode == op.OpCodes.resetPowerMonitor:
            self.eeprom[op.OpCodes.setMainVoltage] = 0
            return
        elif opcode in (op.OpCodes.calibrateMainVoltage, op.OpCodes.Stop):
            return
        elif opcode in (op.OpCodes.FirmwareVersion, op.OpCodes.ProtocolVersion, op.OpCodes.HardwareModel, op.OpCodes.getStartStatus):
            raise _stall(f"opcode {opcode:#x} is read-only")
        self.eeprom[opcode] = value

    def _start(self, cal_time_ms: int, max_samples: int) -> None:
        now = time.monotonic()
        self.sampling = True
        self.cal_time_ms = cal_time_ms
        self.max_samples = max_samples
        self.dropped_total = 0
        self.samples_sent = 0
        self.packets_sent = 0
        self.reads = 0
        self.largest_read_packets = 0
        self.first_packet_dropped = None
        self.last_packet_dropped = None
        self._t0 = now
        self._next_slot = 0
        self._fifo.clear()
        self._fifo_len = 0
        self._busy_times, self._busy_states = [now], [self.power_model.is_busy()]
        self._poller_stop = threading.Event()
        if self.power_model.busy is not None:
            threading.Thread(target=self._poll_busy, args=(self._poller_stop, now), name=f"monsoon-sim-{self.serial_number}",
                             daemon=True).start()

    def _stop_sampling(self) -> None:
        self.sampling = False
        self._poller_stop.set()

    def _poll_busy(self, stop: threading.Event, polled_at: float) -> None:
        """Record when the phone's state changes, while sampling: a change seen between two polls is put halfway."""
        while not stop.wait(BUSY_POLL_S):
            state = self.power_model.is_busy()  # outside the lock: it may be slow (a scan of /proc)
            now = time.monotonic()
            with self._lock:
                if stop.is_set() or not self.attached:
                    return
                if state != self._busy_states[-1]:
                    self._busy_times.append((polled_at + now) / 2.0)
                    self._busy_states.append(state)
            polled_at = now

    def _busy_at(self, times: np.ndarray) -> np.ndarray:
        """The phone's state at each of ``times`` (the last one known for times not polled yet)."""
        change_times = np.asarray(self._busy_times)
        index = np.searchsorted(change_times, times, side="right") - 1
        states = np.asarray(self._busy_states, dtype=bool)[np.maximum(index, 0)]
        # Forget the changes before these times (all later samples are later still), keeping the state they start in.
        first = max(int(index[-1]), 0) if index.size else 0
        if first:
            del self._busy_times[:first], self._busy_states[:first]
        return states

    def _slot_types(self, slots: np.ndarray) -> np.ndarray:
        burst = 2 * CALIBRATION_BURST
        kinds = np.full(slots.size, _MEASUREMENT, dtype=np.int64)
        in_burst = slots < burst
        kinds[in_burst] = np.where(slots[in_burst] % 2 == 0, _ZERO_CAL, _REF_CAL)
        period = round(self.cal_time_ms * self.sample_rate_hz / 1000.0)
        if period >= 3:
            phase = (slots - burst) % period
            after = ~in_burst
            kinds[after & (phase == period - 2)] = _ZERO_CAL
            kinds[after & (phase == period - 1)] = _REF_CAL
        return kinds

    def _advance(self, now: float) -> None:
        """Take every sample whose slot has passed by ``now`` into the FIFO."""
        if not self.sampling:
            return
        due = int((now - self._t0) * self.sample_rate_hz)
        due = min(due, self.max_samples)
        start = self._next_slot
        n = due - start
        if n <= 0:
            if due >= self.max_samples:
                self._stop_sampling()
            return
        fs = self.sample_rate_hz
        slots = np.arange(start, due, dtype=np.int64)
        busy = self._busy_at(self._t0 + slots / fs)
        kinds = self._slot_types(slots)
        words = self._sample_words(kinds, busy)

        dropped = np.zeros(n, dtype=bool)
        if self.drop_every:
            dropped = (kinds == _MEASUREMENT) & ((slots + 1) % self.drop_every == 0)
        counters = self.dropped_total + np.cumsum(dropped)
        kept = np.flatnonzero(~dropped)
        space = max(self.fifo_samples - self._fifo_len, 0)
        overflow = max(kept.size - space, 0)
        kept = kept[:space]
        if kept.size:
            records = words[kept].astype(">u2").view(np.uint8).reshape(kept.size, SAMPLE_BYTES)
            self._fifo.append((records, (counters[kept] & 0xFFFF).astype(np.uint16), slots[kept]))
            self._fifo_len += kept.size
        self.dropped_total = int(counters[-1]) + overflow
        self._next_slot = due
        if due >= self.max_samples:
            self._stop_sampling()

    def _sample_words(self, kinds: np.ndarray, busy: np.ndarray) -> np.ndarray:
        """Nine 16-bit words per slot: six current ranges, two voltages, sample type."""
        spec = self.spec
        n = kinds.size
        model = self.power_model
        vout = self.vout_v
        on = self.output_on
        main = model.currents_ma(busy, vout, self._rng) if on else np.zeros(n)
        passthrough = self.usb_passthrough != op.USB_Passthrough.Off
        usb_ma = np.zeros(n)
        if passthrough and self.usb_charge_ma > 0:
            # The phone charges from USB: part of its draw leaves the main channel.
            usb_ma = np.full(n, self.usb_charge_ma)
            main = np.maximum(main - self.usb_charge_ma, 0.0)
        limit_ma = self.run_current_limit_a * 1000.0
        over = np.flatnonzero((kinds == _MEASUREMENT) & (main > limit_ma))
        if on and over.size:
            self.tripped = True  # over-current protection: output off from here on
            main[over[0] :] = 0.0
        aux_ma = np.zeros(n)
        currents = (main, main, usb_ma, usb_ma, aux_ma, aux_ma)
        words = np.zeros((n, 9), dtype=np.int64)
        zero = kinds == _ZERO_CAL
        ref = kinds == _REF_CAL
        jitter = self._rng.integers(-1, 2, size=(n, 6))
        for col, (rng_, current) in enumerate(zip(spec.ranges, currents)):
            raw = rng_.raw(current)
            raw[zero] = rng_.zero_cal_raw + jitter[zero, col]
            raw[ref] = rng_.ref_cal_raw + jitter[ref, col]
            words[:, col] = raw
        lo, hi = (-32768, 32767) if spec.signed_currents else (0, 65535)
        words[:, :6] = np.clip(words[:, :6], lo, hi) & 0xFFFF
        vmain = vout if self.output_on else 0.0
        vusb = 5.0 if passthrough else 0.0
        words[:, 6] = min(round(vmain / (ADC_VOLTS_PER_TICK * spec.main_voltage_scale)), 0xFFFF)
        words[:, 7] = min(round(vusb / (ADC_VOLTS_PER_TICK * spec.usb_voltage_scale)), 0xFFFF)
        words[:, 8] = kinds
        return words

    def _take(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``count`` oldest samples out of the FIFO: their records and dropped-sample counters."""
        records, counters, left = [], [], count
        while left:
            rec, cnt, slots = self._fifo[0]
            if rec.shape[0] <= left:
                self._fifo.popleft()
            else:
                self._fifo[0] = (rec[left:], cnt[left:], slots[left:])
                rec, cnt = rec[:left], cnt[:left]
            records.append(rec)
            counters.append(cnt)
            left -= rec.shape[0]
        self._fifo_len -= count
        return np.concatenate(records), np.concatenate(counters)

    def _packets(self) -> array.array:
        """The packets of one bulk read, back to back: one if the host keeps up, the backlog if it fell behind."""
        per = MAX_SAMPLES_PER_PACKET
        if self._fifo[0][2][0] < 2 * CALIBRATION_BURST:
            count = min(per, self._fifo_len)  # the package's start-up loop keeps nothing else a read brings
        else:
            count = min(self._fifo_len, BATCH_MAX_PACKETS * per)
            if self.sampling:
                count -= count % per  # full packets while sampling; the last, short one once it stopped
        records, counters = self._take(count)
        full, rest = divmod(count, per)
        packets = np.zeros((full + (rest > 0), PACKET_BYTES), dtype=np.uint8)
        packets[:full, 4 : 4 + per * SAMPLE_BYTES] = records[: full * per].reshape(full, per * SAMPLE_BYTES)
        sizes = np.full(packets.shape[0], per)
        last = counters[per - 1 :: per][:full]  # each packet carries the counter of its last sample
        if rest:
            packets[full, 4 : 4 + rest * SAMPLE_BYTES] = records[full * per :].reshape(-1)
            sizes[-1] = rest
            last = np.append(last, counters[-1])
        packets[:, 0] = last & 0xFF
        packets[:, 1] = last >> 8
        packets[:, 3] = sizes
        self.samples_sent += count
        self.packets_sent += packets.shape[0]
        self.reads += 1
        self.largest_read_packets = max(self.largest_read_packets, packets.shape[0])
        if self.first_packet_dropped is None:
            self.first_packet_dropped = int(last[0])
        self.last_packet_dropped = int(last[-1])
        return array.array("B", packets.tobytes())
