"""The node's TOML config as frozen dataclasses. See config/fabnode-printer.toml for every option.

Every error names the file, the section and the key (fabnode.config.reader); an unknown option stops
start-up. `fabnode config check FILE` runs exactly this. Each option's default is written once, in its
getter call below (the machine's and materials' come from fabnode.machine.profile); the dataclasses have
none, so nothing else can drift from it. `settings_in_force` shows them all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from fabnode.broker_url import parse_broker_url
from fabnode.config.directory import DirectorySettings, read_directory_settings
from fabnode.config.reader import ConfigError, ConfigReader, Section
from fabnode.config.web import WebSettings, read_web_settings
from fabnode.envelope import NAME
from fabnode.machine.profile import GRBL, LASER, MARLIN, PRINTER, MachineProfile, Material

__all__ = ["Config", "ConfigError", "load_config", "settings_in_force"]

# BCM numbers usable as general-purpose pins on a 40-pin Raspberry Pi header.
_BCM_MAX = 27
# Upper bounds far above any fab lab's machine, there so a typo (or 1e300) is an error, not a limit.
_MM_MAX = 100_000.0
_FEED_MM_S_MAX = 100_000.0
_FEED_MM_MIN_MAX = 6_000_000.0
_ACCEL_MAX = 1_000_000.0
_POWER_MAX = 1_000_000.0  # GRBL $30 is a float; some controllers scale S to 10000 or more
_PRICE_MAX = 1_000_000.0


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Who this node is: the lab and the machine, as they appear in topics and reports."""

    lab: str
    machine: str
    state_dir: Path | None
    min_free_mb: float  # below this much free space in the state dir, no new session starts


@dataclass(frozen=True, slots=True)
class SerialConfig:
    """How to reach the firmware. `port = "sim"` runs the firmware simulator on a pty."""

    port: str
    baud: int
    rx_window: int
    advanced_ok: bool
    no_answer_s: float
    reconnect_every_s: float  # a lost port (USB unplugged) is reopened this often until it is back
    no_progress_s: float  # GRBL answering status polls without progress this long fails the job
    single_line_after_error: int  # Marlin: clean lines sent one at a time after a refused line (0: never)


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Timeouts of a member's session and of the cooldown after it."""

    idle_timeout_s: float
    idle_warning_s: float
    cooldown_hotend_below_c: float
    cooldown_max_s: float
    fume_runon_s: float
    checkpoint_every_s: float
    host_lost_relay_s: float  # the port lost during a job: the relay goes off this long after


@dataclass(frozen=True, slots=True)
class GpioConfig:
    """BCM pin numbers; `backend = "sim"` uses in-process pins."""

    backend: str
    relay_pin: int
    relay_active_low: bool
    green_led_pin: int
    red_led_pin: int
    buzzer_pin: int
    estop_pin: int | None  # normally closed: the circuit opens when pressed or when a wire breaks
    lid_pin: int | None  # laser lid/door interlock, closed when the lid is shut
    busy_pin: int | None  # optional current sensor: high while the machine draws power
    debounce_ms: int


@dataclass(frozen=True, slots=True)
class ReaderConfig:
    """The badge reader: `nfc` (nfcpy device string), `keyboard` (a 125 kHz wedge) or `sim`."""

    backend: str
    device: str
    holdoff_s: float  # a badge left on the reader counts again only after it left this long


@dataclass(frozen=True, slots=True)
class TelemetryConfig:
    """The region's MQTT broker; no broker means records wait in the outbox."""

    broker: str | None
    prefix: str
    ca_file: Path | None
    username: str | None
    password_file: Path | None
    client_cert: Path | None
    client_key: Path | None
    in_flight: int
    resend_after_s: float


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
    inbox: Path | None
    max_job_mb: int  # [machine] max_job_mb: the largest job file the node reads
    web: WebSettings  # [web]: the slicer-upload server and status page
    directory: DirectorySettings  # [directory]: the lab directory shared by the lab's nodes

    @property
    def max_job_bytes(self) -> int:
        """`max_job_mb` in bytes, for comparing with a file's size before reading it."""
        return self.max_job_mb * 1024 * 1024


def load_config(path: Path) -> Config:
    """Read and check a config file; raises ConfigError naming the file and the key."""
    reader = ConfigReader.load(path)
    node = _node(reader.section("node", required=True))
    materials = _materials(reader)
    machine_section = reader.section("machine", required=True)
    machine = _machine(machine_section, node.machine, materials)
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
        max_job_mb=machine_section.get_int("max_job_mb", 200, minval=1, maxval=100_000),
        web=read_web_settings(reader),
        directory=read_directory_settings(reader),
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
        base = Material(name)
        materials[name] = Material(
            name=name,
            diameter_mm=s.get_float("diameter_mm", base.diameter_mm, minval=0.1, maxval=5.0),
            density_g_cm3=s.get_float("density_g_cm3", base.density_g_cm3, minval=0.1, maxval=20.0),
            # Not Material's own price: a lab that names a material but no price charges nothing for it.
            price_per_kg=s.get_float("price_per_kg", 0.0, minval=0.0, maxval=_PRICE_MAX),
            price_per_laser_hour=s.get_float("price_per_laser_hour", 0.0, minval=0.0, maxval=_PRICE_MAX),
            laser_power=s.get_float("laser_power", base.laser_power, minval=0.0, maxval=_POWER_MAX),
            laser_feed_mm_min=s.get_float(
                "laser_feed_mm_min", base.laser_feed_mm_min, minval=0.0, maxval=_FEED_MM_MIN_MAX
            ),
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
    vmin = s.get_floats("volume_min_mm", defaults.volume_min_mm, count=3, minval=-_MM_MAX, maxval=_MM_MAX)
    vmax = s.get_floats("volume_max_mm", defaults.volume_max_mm, count=3, minval=-_MM_MAX, maxval=_MM_MAX)
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
        max_feedrate_mm_s=s.get_floats(
            "max_feedrate_mm_s", defaults.max_feedrate_mm_s, count=4, minval=0, maxval=_FEED_MM_S_MAX
        ),
        max_accel_mm_s2=s.get_floats(
            "max_accel_mm_s2", defaults.max_accel_mm_s2, count=4, minval=0, maxval=_ACCEL_MAX
        ),
        print_accel_mm_s2=s.get_float(
            "print_accel_mm_s2", defaults.print_accel_mm_s2, minval=1, maxval=_ACCEL_MAX
        ),
        travel_accel_mm_s2=s.get_float(
            "travel_accel_mm_s2", defaults.travel_accel_mm_s2, minval=1, maxval=_ACCEL_MAX
        ),
        jerk_mm_s=s.get_floats("jerk_mm_s", defaults.jerk_mm_s, count=4, minval=0, maxval=_FEED_MM_S_MAX),
        forbidden_commands=frozenset(
            c.upper() for c in s.get_strs("forbidden_commands", tuple(defaults.forbidden_commands))
        ),
        max_line_length=s.get_int(
            "max_line_length", defaults.max_line_length if firmware == MARLIN else 80, minval=16, maxval=256
        ),
        laser_max_power=s.get_float("laser_max_power", defaults.laser_max_power, minval=1, maxval=_POWER_MAX),
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
        no_progress_s=s.get_float("no_progress_s", 120.0, minval=1.0, maxval=3600.0),
        single_line_after_error=s.get_int("single_line_after_error", 500, minval=0, maxval=10_000_000),
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


# [machine] options, as spelt in the file; the profile's other fields (name, retract_accel_mm_s2,
# junction_deviation_mm) are not config options.
_MACHINE_KEYS = (
    "kind", "firmware", "volume_min_mm", "volume_max_mm", "max_hotend_c", "max_bed_c", "max_feedrate_mm_s",
    "max_accel_mm_s2", "print_accel_mm_s2", "travel_accel_mm_s2", "jerk_mm_s", "forbidden_commands",
    "max_line_length", "laser_max_power", "safe_stop_gcode",
)  # fmt: skip
_MATERIAL_KEYS = ("diameter_mm", "density_g_cm3", "price_per_kg", "price_per_laser_hour", "laser_power",
                  "laser_feed_mm_min")  # fmt: skip


def settings_in_force(config: Config) -> dict[str, dict[str, object]]:
    """Every setting in force, defaults included, as JSON-able data: section -> option -> value.

    Secrets are never included: files are named by path (never read), a broker URL loses any user:pass.
    """
    sections: dict[str, dict[str, object]] = {
        "node": _fields(config.node),
        "serial": _fields(config.serial),
        "machine": {key: _plain(getattr(config.machine, key)) for key in _MACHINE_KEYS},
        "session": _fields(config.session),
        "gpio": _fields(config.gpio),
        "reader": _fields(config.reader),
        "telemetry": _fields(config.telemetry),
        "inbox": {"path": _plain(config.inbox)},
        "web": {"listen": config.web.listen,
                **{k: v for k, v in _fields(config.web).items() if k not in ("host", "port")}},
        "directory": _fields(config.directory),
    }
    sections["machine"]["material"] = config.machine.material.name
    sections["machine"]["max_job_mb"] = config.max_job_mb
    broker = config.telemetry.broker
    if broker is not None:
        sections["telemetry"]["broker"] = _without_credentials(broker)
    for name, material in config.materials.items():
        sections[f"materials.{name}"] = {key: _plain(getattr(material, key)) for key in _MATERIAL_KEYS}
    return sections


def _fields(section: object) -> dict[str, object]:
    # The section dataclasses name their fields exactly as the file's options.
    return {f.name: _plain(getattr(section, f.name)) for f in dataclasses.fields(section)}  # type: ignore[arg-type]


def _plain(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, frozenset):
        return sorted(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
