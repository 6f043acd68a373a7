"""The node's TOML config as frozen dataclasses. See config/fabnode-printer.toml for every option.

Every error names the file, the section and the key (fabnode.config.reader); an unknown option stops
start-up. `fabnode config check FILE` runs exactly this.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fabnode.broker_url import parse_broker_url
from fabnode.config.reader import ConfigError, ConfigReader, Section
from fabnode.envelope import NAME
from fabnode.machine.profile import GRBL, LASER, MARLIN, PRINTER, MachineProfile, Material

__all__ = ["Config", "ConfigError", "load_config"]

# BCM numbers usable as general-purpose pins on a 40-pin Raspberry Pi header.
_BCM_MAX = 27


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Who this node is: the lab and the machine, as they appear in topics and reports."""

    lab: str
    machine: str
    state_dir: Path | None = None
    min_free_mb: float = 16.0  # below this much free space in the state dir, no new session starts


@dataclass(frozen=True, slots=True)
class SerialConfig:
    """How to reach the firmware. `port = "sim"` runs the firmware simulator on a pty."""

    port: str
    baud: int = 115200
    rx_window: int = 127
    advanced_ok: bool = True
    no_answer_s: float = 60.0
    reconnect_every_s: float = 2.0  # a lost port (USB unplugged) is reopened this often until it is back


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Timeouts of a member's session and of the cooldown after it."""

    idle_timeout_s: float = 900.0
    idle_warning_s: float = 60.0
    cooldown_hotend_below_c: float = 50.0
    cooldown_max_s: float = 900.0
    fume_runon_s: float = 120.0
    checkpoint_every_s: float = 5.0
    host_lost_relay_s: float = 120.0  # the port lost during a job: the relay goes off this long after


@dataclass(frozen=True, slots=True)
class GpioConfig:
    """BCM pin numbers; `backend = "sim"` uses in-process pins."""

    backend: str = "sim"
    relay_pin: int = 17
    relay_active_low: bool = False
    green_led_pin: int = 27
    red_led_pin: int = 22
    buzzer_pin: int = 23
    estop_pin: int | None = 5  # normally closed: the circuit opens when pressed or when a wire breaks
    lid_pin: int | None = None  # laser lid/door interlock, closed when the lid is shut
    busy_pin: int | None = None  # optional current sensor: high while the machine draws power
    debounce_ms: int = 30


@dataclass(frozen=True, slots=True)
class ReaderConfig:
    """The badge reader: `nfc` (nfcpy device string), `keyboard` (a 125 kHz wedge) or `sim`."""

    backend: str = "sim"
    device: str = "usb"
    holdoff_s: float = 0.5  # a badge left on the reader counts again only after it left this long


@dataclass(frozen=True, slots=True)
class TelemetryConfig:
    """The region's MQTT broker; no broker means records wait in the outbox."""

    broker: str | None = None
    prefix: str = "fablab"
    ca_file: Path | None = None
    username: str | None = None
    password_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    in_flight: int = 20
    resend_after_s: float = 300.0


@dataclass(frozen=True, slots=True)
class Config:
    """Everything `fabnode run` needs, read from one file."""

    path: Path
    node: NodeConfig
    serial: SerialConfig
    machine: MachineProfile
    materials: dict[str, Material]
    session: SessionConfig
    gpio: GpioConfig
    reader: ReaderConfig
    telemetry: TelemetryConfig
    inbox: Path | None = None
    members_csv: Path | None = field(default=None)


def load_config(path: Path) -> Config:
    """Read and check a config file; raises ConfigError naming the file and the key."""
    reader = ConfigReader.load(path)
    node = _node(reader.section("node", required=True))
    materials = _materials(reader)
    machine = _machine(reader.section("machine", required=True), node.machine, materials)
    serial = _serial(reader.section("serial", required=True))
    config = Config(
        path=path,
        node=node,
        serial=serial,
        machine=machine,
        materials=materials,
        session=_session(reader.section("session")),
        gpio=_gpio(reader.section("gpio"), machine.kind),
        reader=_reader(reader.section("reader")),
        telemetry=_telemetry(reader.section("telemetry")),
        inbox=reader.section("inbox").get_path("path", None),
    )
    reader.finish()
    return config


def _name(section: Section, key: str, default: object = None) -> str:
    value = section.get_str(key) if default is None else section.get_str(key, default)
    if not NAME.match(value):
        raise section.error(key, f"{value!r} must be lower-case letters, digits, '-' or '_' (max 64)")
    return str(value)


def _node(s: Section) -> NodeConfig:
    state_dir = s.get_path("state_dir", None)
    min_free_mb = s.get_float("min_free_mb", 16.0, minval=0.0, maxval=1_000_000.0)
    return NodeConfig(lab=_name(s, "lab"), machine=_name(s, "machine"), state_dir=state_dir,
                      min_free_mb=min_free_mb)  # fmt: skip


def _materials(reader: ConfigReader) -> dict[str, Material]:
    materials: dict[str, Material] = {}
    for s in reader.subsections("materials"):
        name = s.name.split(".", 1)[1]
        materials[name] = Material(
            name=name,
            diameter_mm=s.get_float("diameter_mm", 1.75, minval=0.1, maxval=5.0),
            density_g_cm3=s.get_float("density_g_cm3", 1.24, minval=0.1, maxval=20.0),
            price_per_kg=s.get_float("price_per_kg", 0.0, minval=0.0),
            price_per_laser_hour=s.get_float("price_per_laser_hour", 0.0, minval=0.0),
            laser_power=s.get_float("laser_power", None, minval=0.0),
            laser_feed_mm_min=s.get_float("laser_feed_mm_min", None, minval=0.0),
        )
    return materials


def _machine(s: Section, name: str, materials: dict[str, Material]) -> MachineProfile:
    defaults = MachineProfile()
    kind = s.get_str("kind", choices=(PRINTER, LASER))
    firmware = s.get_str("firmware", MARLIN if kind == PRINTER else GRBL, choices=(MARLIN, GRBL))
    material_name = s.get_str("material", None)
    if material_name is not None and material_name not in materials:
        known = ", ".join(sorted(materials)) or "none defined"
        raise s.error("material", f"{material_name!r} is not a [materials.X] table ({known})")
    vmin = s.get_floats("volume_min_mm", defaults.volume_min_mm, count=3)
    vmax = s.get_floats("volume_max_mm", defaults.volume_max_mm, count=3)
    if any(lo >= hi for lo, hi in zip(vmin, vmax, strict=True)):
        raise s.error("volume_max_mm", f"{list(vmax)} must exceed volume_min_mm {list(vmin)} on every axis")
    return MachineProfile(
        name=name,
        kind=kind,
        firmware=firmware,
        volume_min_mm=vmin,
        volume_max_mm=vmax,
        max_hotend_c=s.get_float("max_hotend_c", defaults.max_hotend_c, minval=0, maxval=500),
        max_bed_c=s.get_float("max_bed_c", defaults.max_bed_c, minval=0, maxval=200),
        max_feedrate_mm_s=s.get_floats("max_feedrate_mm_s", defaults.max_feedrate_mm_s, count=4),
        max_accel_mm_s2=s.get_floats("max_accel_mm_s2", defaults.max_accel_mm_s2, count=4),
        print_accel_mm_s2=s.get_float("print_accel_mm_s2", defaults.print_accel_mm_s2, minval=1),
        travel_accel_mm_s2=s.get_float("travel_accel_mm_s2", defaults.travel_accel_mm_s2, minval=1),
        jerk_mm_s=s.get_floats("jerk_mm_s", defaults.jerk_mm_s, count=4),
        forbidden_commands=frozenset(
            c.upper() for c in s.get_strs("forbidden_commands", tuple(defaults.forbidden_commands))
        ),
        max_line_length=s.get_int("max_line_length", 96 if firmware == MARLIN else 80, minval=16, maxval=256),
        laser_max_power=s.get_float("laser_max_power", defaults.laser_max_power, minval=1),
        safe_stop_gcode=s.get_strs("safe_stop_gcode", defaults.safe_stop_gcode),
        material=materials[material_name] if material_name else defaults.material,
    )


def _serial(s: Section) -> SerialConfig:
    return SerialConfig(
        port=s.get_str("port"),
        baud=s.get_int("baud", 115200, minval=1200, maxval=4_000_000),
        rx_window=s.get_int("rx_window", 127, minval=16, maxval=65536),
        advanced_ok=s.get_bool("advanced_ok", True),
        no_answer_s=s.get_float("no_answer_s", 60.0, minval=1.0, maxval=3600.0),
        reconnect_every_s=s.get_float("reconnect_every_s", 2.0, minval=0.1, maxval=300.0),
    )


def _session(s: Section) -> SessionConfig:
    idle = s.get_float("idle_timeout_s", 900.0, minval=10.0, maxval=86400.0)
    return SessionConfig(
        idle_timeout_s=idle,
        idle_warning_s=s.get_float("idle_warning_s", min(60.0, idle / 2), minval=0.0, maxval=idle),
        cooldown_hotend_below_c=s.get_float("cooldown_hotend_below_c", 50.0, minval=0.0, maxval=200.0),
        cooldown_max_s=s.get_float("cooldown_max_s", 900.0, minval=0.0, maxval=7200.0),
        fume_runon_s=s.get_float("fume_runon_s", 120.0, minval=0.0, maxval=3600.0),
        checkpoint_every_s=s.get_float("checkpoint_every_s", 5.0, minval=0.5, maxval=600.0),
        host_lost_relay_s=s.get_float("host_lost_relay_s", 120.0, minval=0.0, maxval=7200.0),
    )


def _pin(s: Section, key: str, default: int | None) -> int | None:
    value: int | None = s.get_int(key, default, minval=2, maxval=_BCM_MAX)
    return value


def _gpio(s: Section, kind: str) -> GpioConfig:
    config = GpioConfig(
        backend=s.get_str("backend", "sim", choices=("rpi", "sim")),
        relay_pin=s.get_int("relay_pin", 17, minval=2, maxval=_BCM_MAX),
        relay_active_low=s.get_bool("relay_active_low", False),
        green_led_pin=s.get_int("green_led_pin", 27, minval=2, maxval=_BCM_MAX),
        red_led_pin=s.get_int("red_led_pin", 22, minval=2, maxval=_BCM_MAX),
        buzzer_pin=s.get_int("buzzer_pin", 23, minval=2, maxval=_BCM_MAX),
        estop_pin=_pin(s, "estop_pin", 5),
        lid_pin=_pin(s, "lid_pin", 6 if kind == LASER else None),
        busy_pin=_pin(s, "busy_pin", None),
        debounce_ms=s.get_int("debounce_ms", 30, minval=0, maxval=1000),
    )
    keys = ("relay_pin", "green_led_pin", "red_led_pin", "buzzer_pin", "estop_pin", "lid_pin", "busy_pin")
    pins = [(k, getattr(config, k)) for k in keys]
    seen: dict[int, str] = {}
    for key, pin in pins:
        if pin is None:
            continue
        if pin in seen:
            raise s.error(key, f"BCM {pin} is already used by {seen[pin]}")
        seen[pin] = key
    return config


def _reader(s: Section) -> ReaderConfig:
    return ReaderConfig(
        backend=s.get_str("backend", "sim", choices=("nfc", "keyboard", "sim")),
        device=s.get_str("device", "usb"),
        holdoff_s=s.get_float("holdoff_s", 0.5, minval=0.0, maxval=60.0),
    )


def _telemetry(s: Section) -> TelemetryConfig:
    broker = s.get_str("broker", None)
    if broker is not None:
        check_broker_url(broker, lambda msg: s.error("broker", msg))
    return TelemetryConfig(
        broker=broker,
        prefix=s.get_str("prefix", "fablab"),
        ca_file=s.get_path("ca_file", None),
        username=s.get_str("username", None),
        password_file=s.get_path("password_file", None),
        client_cert=s.get_path("client_cert", None),
        client_key=s.get_path("client_key", None),
        in_flight=s.get_int("in_flight", 20, minval=1, maxval=1000),
        resend_after_s=s.get_float("resend_after_s", 300.0, minval=1.0, maxval=86400.0),
    )


def check_broker_url(url: str, error: Callable[[str], Exception] = ConfigError) -> str:
    """Accept `mqtt://host[:port]` or `mqtts://host[:port]`; raise `error(message)` otherwise."""
    parse_broker_url(url, error)
    return url
