"""The analog side of the simulated Monsoon: the phone's current and the monitor's current ranges.

:class:`PowerModel` is the phone behind the monitor (idle or busy current,
noise, a constant-power load).  :class:`CurrentRange` and
:class:`HardwareSpec` describe how the simulated HVPM and LVPM turn a
current into ADC ticks (gain, zero level, reference current, zero error per
range, voltage scales), with the calibration each unit carries in its
EEPROM (:data:`HVPM_SPEC`, :data:`LVPM_SPEC`); the ``*_amps_from_raw`` /
``*_raw_from_amps`` functions are the firmware's current-limit encodings.
The firmware that uses all this is :mod:`harness.energy.monsoon_sim_firmware`.

Imports: ``numpy`` and the ``Monsoon`` package's ``Operations`` constants;
nothing from ``harness``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from Monsoon import Operations as op


@dataclass
class PowerModel:
    """The phone behind the monitor: idle or busy current, plus Gaussian noise.

    ``busy`` is called (from the firmware's own thread, every few ms while it
    samples) and returns True while a workload runs.  Currents are those drawn
    at ``voltage_v``; the phone is a constant-power load, so at another output
    voltage the current scales by ``voltage_v / vout``.
    """

    idle_ma: float = 120.0
    active_ma: float = 850.0
    voltage_v: float = 4.2
    noise_ma: float = 0.0
    busy: Callable[[], bool] | None = None

    def is_busy(self) -> bool:
        return bool(self.busy()) if self.busy is not None else False

    def mean_ma(self, busy: bool) -> float:
        return self.active_ma if busy else self.idle_ma

    def currents_ma(self, busy: np.ndarray, vout_v: float, rng: np.random.Generator) -> np.ndarray:
        current = np.where(busy, self.active_ma, self.idle_ma).astype(np.float64)
        if self.noise_ma > 0:
            current = current + rng.normal(0.0, self.noise_ma, current.size)
        if vout_v > 0:
            current = current * (self.voltage_v / vout_v)
        return current


@dataclass(frozen=True)
class CurrentRange:
    """One current range of one channel: ADC gain, zero level, reference current."""

    ticks_per_ma: float
    zero_raw: int
    ref_ma: float
    zero_error: int = 0  # zero-calibration reading = zero_raw - zero_error (HVPM EEPROM zero offset)

    def raw(self, current_ma: np.ndarray) -> np.ndarray:
        return np.rint(self.zero_raw + current_ma * self.ticks_per_ma)

    @property
    def zero_cal_raw(self) -> int:
        return self.zero_raw - self.zero_error

    @property
    def ref_cal_raw(self) -> int:
        return round(self.zero_raw + self.ref_ma * self.ticks_per_ma)


@dataclass(frozen=True)
class HardwareSpec:
    """What differs between the HVPM and the LVPM, as the firmware shows it."""

    name: str
    model: int  # op.HardwareModel
    ranges: tuple[CurrentRange, ...]  # main coarse, main fine, usb coarse, usb fine, aux coarse, aux fine
    main_voltage_scale: int
    usb_voltage_scale: int
    signed_currents: bool
    max_amps: float


# A unit with its own calibration (not the package's defaults), so the scales
# and (negative) zero offsets really are read from the EEPROM and used.
HVPM_SPEC = HardwareSpec(
    name="HVPM",
    model=op.HardwareModel.HVPM,
    ranges=(
        CurrentRange(ticks_per_ma=4.0, zero_raw=520, ref_ma=6412.0, zero_error=12),  # main coarse
        CurrentRange(ticks_per_ma=250.0, zero_raw=610, ref_ma=36.372, zero_error=-9),  # main fine
        CurrentRange(ticks_per_ma=40.0, zero_raw=480, ref_ma=598.0, zero_error=3),  # usb coarse
        CurrentRange(ticks_per_ma=2000.0, zero_raw=505, ref_ma=13.985, zero_error=-2),  # usb fine
        CurrentRange(ticks_per_ma=100.0, zero_raw=500, ref_ma=250.0),  # aux coarse (package uses no zero offset)
        CurrentRange(ticks_per_ma=8000.0, zero_raw=500, ref_ma=3.1),  # aux fine
    ),
    main_voltage_scale=4,
    usb_voltage_scale=2,
    signed_currents=False,
    max_amps=15.625,
)

_LVPM_FACTORY_RES = 0.050
_LVPM_AUX_RES = 0.100
LVPM_RESISTOR_OFFSETS = {  # opcode: unsigned offset, ohms = factory + 0.0001 * offset
    op.OpCodes.setMainFineResistorOffset: 3,
    op.OpCodes.setMainCoarseResistorOffset: 1,
    op.OpCodes.setUsbFineResistorOffset: 0,
    op.OpCodes.setUsbCoarseResistorOffset: 0,
    op.OpCodes.setAuxFineResistorOffset: 0,
    op.OpCodes.setAuxCoarseResistorOffset: 0,
}


def _lvpm_scale(base: float, factory: float, offset: int) -> float:
    """The scale LVPM.fillStatusPacket derives from a resistor offset."""
    return base * (factory / (factory + offset * 0.0001))


LVPM_SPEC = HardwareSpec(
    name="LVPM",
    model=op.HardwareModel.LVPM,
    ranges=(
        CurrentRange(4.0, 300, _lvpm_scale(3103.4, _LVPM_FACTORY_RES, 1)),  # main coarse (mA)
        CurrentRange(120.0, 310, _lvpm_scale(35946.0, _LVPM_FACTORY_RES, 3) / 1000),  # main fine
        CurrentRange(4.0, 300, 3103.4),  # usb coarse
        CurrentRange(120.0, 300, 35.946),  # usb fine
        CurrentRange(5000.0, 300, 1.289),  # aux coarse (the package's LVPM aux units are odd; unused)
        CurrentRange(1.0e8, 300, 0.05049 / 1000),  # aux fine
    ),
    main_voltage_scale=2,
    usb_voltage_scale=2,
    signed_currents=True,
    max_amps=8.0,
)


def hvpm_amps_from_raw(raw: int) -> float:
    return 15.625 * (raw - 3840.0) / (65535.0 - 3840.0)


def hvpm_raw_from_amps(amps: float) -> int:
    return int((65535 - 0x0F00) * (amps / 15.625) + 0x0F00)


def lvpm_amps_from_raw(raw: int) -> float:
    return 8.0 * (1.0 - min(raw, 1023) / 1023.0)


def lvpm_raw_from_amps(amps: float) -> int:
    return int(1023 * (1.0 - amps / 8.0))
