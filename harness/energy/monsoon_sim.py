"""A simulated Monsoon power monitor, emulated at the USB protocol layer.

The Monsoon package (``monsoon`` 0.1.88: ``Monsoon.HVPM``, ``Monsoon.LVPM``,
``Monsoon.sampleEngine``, ``Monsoon.pmapi``) talks to the monitor through a
protocol object, ``HVPM.Monsoon().setup_usb(serial, Protocol=...)``.
:class:`SimulatedMonsoonProtocol` is a subclass of ``pmapi.USB_protocol`` that
replaces only what touches the USB bus (finding a device, resetting it); every
control transfer and bulk read the package issues (``sendCommand``,
``getValue``, ``startSampling``, ``stopSampling``, ``verifyReady``,
``BulkRead``) is the package's own code, sent to a
:class:`SimulatedMonsoonDevice` that stands in for a ``usb.core.Device`` and
emulates the firmware, in :mod:`harness.energy.monsoon_sim_firmware` (control
transfers, sample packets, calibration, timing).  The phone it measures is a
:class:`PowerModel` (:mod:`harness.energy.monsoon_sim_power`, with the
monitor's current ranges).

This module is the USB bus: :class:`SimulatedMonsoonProtocol` and
:func:`simulated_monitor`, and it re-exports the names its users import from
here.  Imports: the ``Monsoon`` package, ``monsoon_sim_firmware`` and
``monsoon_sim_power``.
"""

from __future__ import annotations

from Monsoon import HVPM, LVPM, pmapi
from Monsoon import Operations as op

from harness.energy.monsoon_sim_firmware import SAMPLE_RATE_HZ, SimulatedMonsoonDevice
from harness.energy.monsoon_sim_power import PowerModel


class SimulatedMonsoonProtocol(pmapi.USB_protocol):
    """``pmapi.USB_protocol`` on a simulated USB bus of :class:`SimulatedMonsoonDevice`.

    Only the bus is simulated (``Connect``, ``enumerateDevices``, ``reconnect``,
    ``closeDevice``); ``sendCommand``, ``getValue``, ``startSampling``,
    ``stopSampling``, ``verifyReady`` and ``BulkRead`` are the package's own,
    encoding every request as the real device receives it.

    ``SimulatedMonsoonProtocol(serial=..., power_model=..., hardware=...,
    drop_every=...)`` puts one device on the bus; ``devices=[...]`` puts any
    number (``[]``: none).
    """

    def __init__(self, devices: list[SimulatedMonsoonDevice] | None = None, **device_kwargs) -> None:
        super().__init__()
        if devices is None:
            devices = [SimulatedMonsoonDevice(**device_kwargs)]
        elif device_kwargs:
            raise TypeError("give either devices or the keyword arguments of one device")
        self.bus: list[SimulatedMonsoonDevice] = list(devices)

    @property
    def device(self) -> SimulatedMonsoonDevice | None:
        """The connected device, else the first one on the bus."""
        if self.DEVICE is not None:
            return self.DEVICE
        return self.bus[0] if self.bus else None

    def enumerateDevices(self):
        return [d.serial_number for d in self.bus if d.attached]

    def Connect(self, deviceType, serialno=None):
        """As ``pmapi.USB_protocol.Connect``, on the simulated bus (same messages)."""
        self.DEVICE = next(
            (d for d in self.bus if d.attached and (serialno is None or d.serial_number == str(serialno))),
            None,
        )
        if self.DEVICE is None:
            print("Unable to find device")
            return
        connectedDeviceType = self.getValue(op.OpCodes.HardwareModel, 2)
        if connectedDeviceType != deviceType:
            print("warning:  Device type mismatch.  Found " + repr(connectedDeviceType) + " expected " + repr(deviceType))
        firmwareRev = self.getValue(op.OpCodes.FirmwareVersion, 1)
        if firmwareRev < op.ReturnCodes.CURRENT_FIRMWARE_REV:
            print("Warning:  Detected firmware revision " + repr(firmwareRev) + ", current release is " + repr(op.ReturnCodes.CURRENT_FIRMWARE_REV))
        self.epBulkWriter = 0x01
        self.epBulkReader = 0x81

    def reconnect(self, deviceType, serialno):
        self.DEVICE.reset()
        self.Connect(deviceType, serialno)

    def closeDevice(self):
        self.stopSampling()
        self.DEVICE.reset()


def simulated_monitor(
    serial: str = "SIM-0001",
    power_model: PowerModel | None = None,
    *,
    hardware: str = "HVPM",
    **device_kwargs,
):
    """An ``HVPM.Monsoon`` (``LVPM.Monsoon`` for ``hardware="LVPM"``) connected to a simulated unit.

    The simulated firmware is ``monitor.Protocol.DEVICE``.
    """
    protocol = SimulatedMonsoonProtocol(serial=serial, power_model=power_model, hardware=hardware, **device_kwargs)
    monitor = HVPM.Monsoon() if hardware.upper() == "HVPM" else LVPM.Monsoon()
    monitor.setup_usb(serial, Protocol=protocol)
    if protocol.DEVICE is None:
        raise LookupError(f"no simulated monitor with serial {serial!r}")
    return monitor


__all__ = [
    "SAMPLE_RATE_HZ",
    "PowerModel",
    "SimulatedMonsoonDevice",
    "SimulatedMonsoonProtocol",
    "simulated_monitor",
]
