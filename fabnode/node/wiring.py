"""Picks the node's hardware backends by the names the config gives, and builds `--simulate` configs.

- GPIO: `rpi` (RPi.GPIO / rpi-lgpio, imported only here and only then) or `sim` (simulators.gpio).
- Badge reader: `nfc` (nfcpy), `keyboard` (a 125 kHz wedge reader typing into `device`) or `sim`.
- Firmware: `[serial] port` is a device path / pyserial URL, or `sim`: the Marlin or GRBL simulator
  runs in this process on a pty (the real pyserial path), `time_scale = 1 / sim_speed`, and records
  every command it executed in `<state dir>/sim-firmware.log`. The simulated Marlin printer is reached
  by a stable link, `<state dir>/sim-printer.tty`, as a real one by a udev link: `fabnode sim-input
  port unplug|plug` pulls and replugs its USB cable (a new pty behind the same path).
Only this module, fabnode.node.loop and fabnode.cli import drivers/ and simulators/.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from drivers.gpio.machine_io import GpioMachineIO, Wiring
from drivers.grbl.host import GrblHost
from drivers.hostproto import HostProtocol
from drivers.marlin.host import MarlinHost
from fabnode.config.settings import Config, load_config
from fabnode.machine.profile import GRBL, LASER
from fabnode.node.ports import BadgeReader, MachineIO, SimFirmware, SimParts, SimPins, SimReader
from fabnode.node.relay_record import record_relay_wiring
from fabnode.node.sim_configs import simulated_toml

log = logging.getLogger("fabnode.wiring")
SIM_PORT = "sim"
SIM_RECORD_NAME = "sim-firmware.log"
SIM_LINK_NAME = "sim-printer.tty"


class WiringError(RuntimeError):
    """A backend the config names cannot be opened here (no Pi, no reader); the message says which."""


@dataclass
class Parts:
    """Everything with a wire to the outside, built from the config; the daemon drives them."""

    io: MachineIO
    reader: BadgeReader
    port: str
    baud: int
    make_protocol: Callable[[], HostProtocol]
    sim_gpio: SimPins | None = None  # when the GPIO is simulated
    sim_reader: SimReader | None = None  # when the reader is simulated
    simulator: SimFirmware | None = None  # MarlinSimulator / GrblSimulator when the firmware is simulated
    sim_record: Path | None = None
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        """Stop the reader, switch the GPIO off (relay off) and stop the simulators."""
        for closer in [self.reader.stop, self.io.close, *self.closers]:
            try:
                closer()
            except Exception:  # the others must still close
                log.exception("closing %r", closer)


def build_parts(config: Config, state_dir: Path, sim_speed: float = 50.0) -> Parts:
    """Open the GPIO first (relay off at once), then the reader and the firmware's port."""
    gpio = config.gpio
    record_relay_wiring(state_dir, gpio.backend, gpio.relay_pin, gpio.relay_active_low)
    io, sim_gpio = _gpio(config)
    try:
        reader, sim_reader = _reader(config)
        port, simulator, record = _firmware(config, state_dir, sim_speed)
    except BaseException:
        io.close()
        raise
    parts = Parts(io, reader, port, config.serial.baud, lambda: make_protocol(config, check_laser_mode=True),
                  sim_gpio, sim_reader,
                  simulator, record)  # fmt: skip
    if simulator is not None:
        parts.closers.append(simulator.stop)
    return parts


def make_protocol(config: Config, check_laser_mode: bool = False) -> HostProtocol:
    """The host protocol for the machine's firmware, with the config's limits; `check_laser_mode`: GRBL
    reports its $32 after every greeting (the daemon refuses jobs while it is off)."""
    if config.machine.firmware == GRBL:
        return GrblHost(rx_buffer_bytes=config.serial.rx_window, no_answer_after_s=config.serial.no_answer_s,
                        no_progress_s=config.serial.no_progress_s, check_laser_mode=check_laser_mode)
    return MarlinHost(
        rx_window_bytes=config.serial.rx_window,
        use_advanced_ok=config.serial.advanced_ok,
        safe_stop_gcode=config.machine.safe_stop_gcode,
        no_answer_after_s=config.serial.no_answer_s,
        # poke a lost `ok` well before the no-answer limit, so a short limit still gets its pokes
        poke_after_s=min(10.0, config.serial.no_answer_s / 3),
        single_line_after_error=config.serial.single_line_after_error,
    )


def _gpio(config: Config) -> tuple[MachineIO, SimPins | None]:
    wiring = Wiring.from_config(config.gpio)
    if config.gpio.backend == "sim":
        from simulators.gpio import SimGpio

        pins = SimGpio.from_wiring(config.gpio)
        return GpioMachineIO(pins, wiring, debounce_ms=config.gpio.debounce_ms), pins
    try:
        from drivers.gpio.rpi import open_rpi

        return open_rpi(wiring, debounce_ms=config.gpio.debounce_ms), None
    except (RuntimeError, ImportError) as exc:
        raise WiringError(f"{config.path}: [gpio] backend = \"rpi\": cannot use the Pi's GPIO here ({exc}); "
                          f"use backend = \"sim\" off a Raspberry Pi") from None


def _reader(config: Config) -> tuple[BadgeReader, SimReader | None]:
    backend, device = config.reader.backend, config.reader.device
    if backend == "sim":
        from simulators.badge import SimBadgeReader

        reader = SimBadgeReader()
        return reader, reader
    if backend == "keyboard":
        from drivers.badge.readers import KeyboardWedgeReader

        return KeyboardWedgeReader(device, holdoff_s=config.reader.holdoff_s), None
    from drivers.badge.nfc import NfcReader

    return NfcReader(device, holdoff_s=config.reader.holdoff_s), None


def _firmware(config: Config, state_dir: Path,
              sim_speed: float) -> tuple[str, SimFirmware | None, Path | None]:  # fmt: skip
    if config.serial.port != SIM_PORT:
        return config.serial.port, None, None
    record = state_dir / SIM_RECORD_NAME
    time_scale = 1.0 / sim_speed if sim_speed > 0 else 0.0
    if config.machine.firmware == GRBL:
        from simulators.grbl.simulator import GrblSimulator

        grbl = GrblSimulator(baud=config.serial.baud, time_scale=time_scale, record=record)
        grbl.start()
        simulator: SimFirmware = grbl
        port = str(grbl.port)
    else:
        from simulators.marlin.simulator import MarlinSimulator

        marlin = MarlinSimulator(baud=config.serial.baud, time_scale=time_scale, record=record,
                                 advanced_ok=config.serial.advanced_ok,
                                 link=state_dir / SIM_LINK_NAME)  # fmt: skip
        marlin.start()
        simulator = marlin
        port = str(marlin.link or marlin.port)
    log.info("simulated %s firmware on %s (time x%g)", config.machine.firmware, port, sim_speed)
    return port, simulator, record


# --- `fabnode run --simulate` -----------------------------------------------------------------------

def simulated_config(config_file: Path | None, firmware: str | None, state_dir: Path) -> Config:
    """The config for `--simulate`: the given file with every part simulated (the web server on a free
    loopback port), or a built-in one."""
    if config_file is None:
        kind = LASER if firmware == GRBL else "printer"
        config_file = state_dir / f"fabnode-sim-{kind}.toml"
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        config_file.write_text(simulated_toml(kind == LASER), encoding="utf-8")
    config = load_config(config_file)
    inbox = config.inbox if config.inbox is not None else state_dir / "inbox"
    return dataclasses.replace(
        config,
        serial=dataclasses.replace(config.serial, port=SIM_PORT),
        gpio=dataclasses.replace(config.gpio, backend="sim"),
        reader=dataclasses.replace(config.reader, backend="sim"),
        inbox=inbox,
        # A free loopback port, never announced: a simulated node is no printer for the LAN's slicers.
        web=dataclasses.replace(config.web, host="127.0.0.1", port=0, announce=False),
    )


def sim_input(parts: SimParts, name: str, action: str) -> str:
    """Act on simulated hardware; returns what happened.

    estop press|release, lid open|close, busy on|off (GPIO inputs); reader unplug|plug (the badge
    reader's cable); port unplug|plug (the simulated printer's USB cable).
    """
    gpio = name in ("estop", "lid", "busy")
    actions = _sim_gpio_actions(parts) if gpio else _sim_cable_actions(parts, name)
    act = actions.get((name, action))
    if act is None:
        known = ", ".join(f"{n} {a}" for n, a in actions)
        raise WiringError(f"unknown simulated input {name} {action}: use one of {known}")
    try:
        act()
    except RuntimeError as exc:  # e.g. a printer with no lid switch wired
        raise WiringError(str(exc)) from None
    return f"{name} {action}"


def _sim_gpio_actions(parts: SimParts) -> dict[tuple[str, str], Callable[[], None]]:
    pins = parts.sim_gpio
    if pins is None:
        raise WiringError("the GPIO is not simulated: there is no simulated input to drive")
    return {
        ("estop", "press"): pins.press_estop, ("estop", "release"): pins.release_estop,
        ("lid", "open"): pins.open_lid, ("lid", "close"): pins.close_lid,
        ("busy", "on"): lambda: pins.set_busy(True), ("busy", "off"): lambda: pins.set_busy(False),
    }  # fmt: skip


def _sim_cable_actions(parts: SimParts, name: str) -> dict[tuple[str, str], Callable[[], None]]:
    reader, firmware = parts.sim_reader, parts.simulator
    if name == "reader" and reader is None:
        raise WiringError("the badge reader is not simulated: unplug the real one")
    unplug, plug = getattr(firmware, "unplug", None), getattr(firmware, "plug", None)  # a printer's USB cable
    if name == "port" and unplug is None:
        raise WiringError("the firmware's port is not a simulated printer's: unplug the real cable")
    actions: dict[tuple[str, str], Callable[[], None]] = {}
    if reader is not None:
        actions.update({("reader", "unplug"): reader.unplug, ("reader", "plug"): reader.plug})
    if unplug is not None and plug is not None:
        actions.update({("port", "unplug"): unplug, ("port", "plug"): plug})
    return actions


def sim_relay_on(parts: SimParts) -> bool | None:
    """The simulated relay pin's state, or None when the GPIO is real."""
    if parts.sim_gpio is None:
        return None
    with contextlib.suppress(Exception):
        return bool(parts.sim_gpio.relay_on())
    return None

