"""The technicians' calibration routines as sans-I/O dialogues (`fabnode calibrate ...`).

A routine is a generator: it yields steps (`Send` a command to the firmware, `Ask` the technician,
`Say` something, `StreamJob` a short file, `RecordMaterial` in the config) and is sent back each
step's result (a `Reply`, the parsed answer, None, a `JobResult`, the file written). `drive()` runs
one against any `DialogueIO`; the CLI wires a serial port (or the daemon) and stdin/flags in, tests
wire scripted replies. Nothing here opens a port, reads stdin or sleeps.

The printer routines (esteps, pid, zoffset, level) are here; the laser grid is in
fabnode.technician.laser, the replies' parsers in fabnode.technician.parse.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from fabnode.technician.parse import (
    AutotuneFailed,
    Capabilities,
    format_mesh,
    parse_autotune,
    parse_capabilities,
    parse_m92,
    parse_m851,
    parse_mesh,
    parse_pid,
)

HEAT_TIMEOUT_S = 600.0  # M109 from cold on a slow hotend, with margin
HOME_TIMEOUT_S = 180.0
LEVEL_TIMEOUT_S = 900.0  # G29 on a 10x10 mesh takes minutes
AUTOTUNE_S_PER_CYCLE = 120.0  # a bed's cycle can take well over a minute
ZOFFSET_RANGE_MM = (-20.0, 20.0)  # Marlin's Z_PROBE_OFFSET_RANGE_MIN/MAX
ESTEPS_RATIO_LIMITS = (0.5, 1.5)  # beyond this a measurement slip is likelier than an extruder error
RUNNING_STATES = ("running", "paused")


class CalibrationError(Exception):
    """The routine cannot go on: the firmware refused, a reply made no sense, or the printer lacks a part."""


class Aborted(CalibrationError):
    """The technician said no."""


@dataclass(frozen=True, slots=True)
class Send:
    """Send one command to the firmware; the routine is sent back its `Reply`."""

    line: str
    timeout_s: float = 30.0


@dataclass(frozen=True, slots=True)
class Reply:
    """What the firmware answered to one command (every line up to and including ok/error)."""

    lines: tuple[str, ...]
    ok: bool


@dataclass(frozen=True, slots=True)
class Ask:
    """A question; `key` is the answer flag (`--<key>`); `parse` turns the text into the value sent back."""

    key: str
    text: str
    parse: Callable[[str], object]
    default: str | None = None
    yes_no: bool = False  # `--yes` answers it


@dataclass(frozen=True, slots=True)
class Say:
    """Tell the technician something."""

    text: str


@dataclass(frozen=True, slots=True)
class StreamJob:
    """Stream these file lines as a job; the routine is sent back a `JobResult`."""

    name: str
    lines: tuple[str, ...]
    timeout_s: float


@dataclass(frozen=True, slots=True)
class JobResult:
    """How a streamed job ended."""

    completed: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RecordMaterial:
    """Write laser settings into the config's `[materials.<material>]`; sent back the file's path (str)."""

    material: str
    laser_power: float
    laser_feed_mm_min: float


Step = Send | Ask | Say | StreamJob | RecordMaterial


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a routine did: a one-line summary, the settings it changed, whether it saved them."""

    routine: str
    summary: str
    changes: tuple[tuple[str, str, str], ...] = ()  # (setting, before, after)
    saved: bool | None = None  # None: nothing to save
    data: Mapping[str, object] = field(default_factory=dict)


Dialogue = Generator[Step, object, Outcome]


class DialogueIO(Protocol):
    """Whoever carries a dialogue's steps out (the CLI, a test script)."""

    def send(self, step: Send) -> Reply: ...

    def ask(self, step: Ask) -> object: ...

    def say(self, text: str) -> None: ...

    def stream(self, step: StreamJob) -> JobResult: ...

    def record(self, step: RecordMaterial) -> str: ...


def drive(dialogue: Dialogue, io: DialogueIO) -> Outcome:
    """Run a dialogue to its end through `io`; CalibrationError from the routine passes through."""
    result: object = None
    while True:
        try:
            step = dialogue.send(result)
        except StopIteration as done:
            outcome: Outcome = done.value
            return outcome
        if isinstance(step, Send):
            result = io.send(step)
        elif isinstance(step, Ask):
            result = io.ask(step)
        elif isinstance(step, Say):
            io.say(step.text)
            result = None
        elif isinstance(step, StreamJob):
            result = io.stream(step)
        else:
            result = io.record(step)


# --- answers ---------------------------------------------------------------------------------------


def number(low: float, high: float, unit: str = "") -> Callable[[str], float]:
    """A parser for a number between low and high (a trailing unit such as `mm` is allowed)."""

    def parse(text: str) -> float:
        cleaned = text.strip().lower()
        if unit and cleaned.endswith(unit):
            cleaned = cleaned[: -len(unit)].strip()
        try:
            value = float(cleaned)
        except ValueError:
            raise ValueError(f"{text.strip()!r} is not a number") from None
        if not low <= value <= high:
            raise ValueError(f"{value:g} is outside {low:g}..{high:g}{(' ' + unit) if unit else ''}")
        return value

    return parse


def yes_no(text: str) -> bool:
    """y/yes/true/1 or n/no/false/0."""
    word = text.strip().lower()
    if word in ("y", "yes", "true", "1"):
        return True
    if word in ("n", "no", "false", "0"):
        return False
    raise ValueError(f"{text.strip()!r}: answer yes or no")


def confirm(key: str, text: str, default: bool) -> Ask:
    """A yes/no question that `--yes` answers."""
    return Ask(key, text, yes_no, "yes" if default else "no", yes_no=True)


# --- building blocks of the routines ---------------------------------------------------------------


def command(line: str, timeout_s: float = 30.0) -> Generator[Step, object, Reply]:
    """Send one command; CalibrationError when the firmware refuses it."""
    reply = yield Send(line, timeout_s)
    if not isinstance(reply, Reply):
        raise TypeError(f"Send({line!r}) must be answered with a Reply, not {reply!r}")
    if not reply.ok:
        said = "; ".join(x for x in reply.lines if x.strip() and x.strip() != "ok")[-300:]
        raise CalibrationError(f"the firmware refused {line!r}: {said or 'no answer'}")
    return reply


def ask(question: Ask) -> Generator[Step, object, object]:
    """Ask and return the parsed answer."""
    answer = yield question
    return answer


def save_on_confirmation(what: str) -> Generator[Step, object, bool]:
    """Ask before `M500`: saving makes the change survive a reset, for every member after."""
    save = yield confirm("save", f"Save {what} to the printer's EEPROM (M500)?", default=False)
    if save is True:
        yield from command("M500")
        yield Say("Saved with M500.")
        return True
    yield Say("Not saved: the change lasts until the printer resets (save later with M500).")
    return False


def capabilities() -> Generator[Step, object, Capabilities]:
    """What M115 says the firmware has."""
    reply = yield from command("M115")
    return parse_capabilities(reply.lines)


def require_probe(probe: bool | None, routine: str, cap: str) -> Generator[Step, object, None]:
    """Refuse clearly when the printer has no probe (`probe` from the CLI/config, else from M115)."""
    if probe is None:
        caps = yield from capabilities()
        if not caps.caps:
            raise CalibrationError(
                f"{routine}: the firmware does not report its capabilities (M115 printed no Cap: lines), "
                "so fabnode cannot tell whether the printer has a probe; pass --probe if it has one")
        probe = caps.has(cap) or caps.has("Z_PROBE")
        if not probe:
            raise CalibrationError(
                f"{routine}: this printer has no bed probe (M115 Cap:{cap}:0, Cap:Z_PROBE:0)")
    elif not probe:
        raise CalibrationError(f"{routine}: this printer has no bed probe (--no-probe)")


# --- esteps ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EstepsPlan:
    """Heat to temp_c, extrude length_mm at feed_mm_min; the filament is marked mark_mm above the inlet."""

    temp_c: float = 200.0
    length_mm: float = 100.0
    mark_mm: float = 120.0
    feed_mm_min: float = 100.0
    max_temp_c: float = 280.0
    measured_mm: float | None = None  # the extruded length, when measured some other way


def new_esteps(old: float, requested_mm: float, actual_mm: float) -> float:
    """The steps/mm that make `requested_mm` come out: old x requested / actual."""
    if actual_mm <= 0:
        raise CalibrationError(f"{actual_mm:g} mm extruded: nothing came out (is the filament loaded?)")
    ratio = requested_mm / actual_mm
    low, high = ESTEPS_RATIO_LIMITS
    if not low <= ratio <= high:
        raise CalibrationError(
            f"{actual_mm:g} mm extruded for {requested_mm:g} mm asked is a change of x{ratio:.2f}: more "
            "likely a slip in the measurement or the filament path than the extruder; check and run again")
    return round(old * ratio, 2)


def esteps(plan: EstepsPlan) -> Dialogue:
    """Guided extruder calibration: read, heat, extrude, measure, compute, apply, save on confirmation.

    The plan is checked at once (CalibrationError), before any port is opened.
    """
    if not 150 <= plan.temp_c <= plan.max_temp_c:
        raise CalibrationError(f"--temp {plan.temp_c:g}: extrude between 150 and {plan.max_temp_c:g} C")
    if not 0 < plan.length_mm < plan.mark_mm:
        raise CalibrationError(f"--length {plan.length_mm:g} must be above 0 and below the "
                               f"{plan.mark_mm:g} mm mark")
    if not 10 <= plan.feed_mm_min <= 600:
        raise CalibrationError(f"--feed {plan.feed_mm_min:g}: 10 to 600 mm/min (the hotend must keep up)")
    return _esteps(plan)


def _esteps(plan: EstepsPlan) -> Dialogue:
    old = yield from read_esteps()
    yield Say(f"E steps/mm now: {old:.2f}")
    ready = yield confirm(
        "ready", f"Mark the filament {plan.mark_mm:g} mm above the extruder's inlet. Heat to "
        f"{plan.temp_c:g} C and extrude {plan.length_mm:g} mm?", default=True)
    if ready is not True:
        raise Aborted("esteps: stopped before heating")
    yield from extrude(plan)
    actual = plan.measured_mm
    if actual is None:
        left = yield from ask(Ask(
            "remaining", f"How much of the {plan.mark_mm:g} mm mark is left above the inlet (mm)?",
            number(0.0, plan.mark_mm, "mm")))
        actual = plan.mark_mm - float(left)  # type: ignore[arg-type]
    new = new_esteps(old, plan.length_mm, actual)
    yield from command(f"M92 E{new:.2f}")
    yield Say(f"E steps/mm: {old:.2f} -> {new:.2f} ({actual:g} mm came out for {plan.length_mm:g} mm)")
    saved = yield from save_on_confirmation(f"E steps/mm {new:.2f}")
    change = ("E steps/mm", f"{old:.2f}", f"{new:.2f}")
    return Outcome("esteps", f"E steps/mm {old:.2f} -> {new:.2f}", (change,), saved,
                   {"old": old, "new": new, "extruded_mm": actual})


def read_esteps() -> Generator[Step, object, float]:
    """The E steps/mm from M503's report, else from M92's."""
    for line in ("M503", "M92"):
        reply = yield from command(line)
        steps = parse_m92(reply.lines).get("E")
        if steps is not None:
            return steps
    raise CalibrationError(
        "could not read the E steps/mm: neither M503 nor M92 printed an `M92 ... E<n>` line")


def extrude(plan: EstepsPlan) -> Generator[Step, object, None]:
    """Heat, extrude relative, wait for the move to finish, put the modes and the heater back."""
    yield Say(f"Heating to {plan.temp_c:g} C...")
    yield from command(f"M109 S{plan.temp_c:g}", HEAT_TIMEOUT_S)
    yield Say(f"Extruding {plan.length_mm:g} mm at {plan.feed_mm_min:g} mm/min...")
    yield from command("G91")
    move_s = plan.length_mm / plan.feed_mm_min * 60.0
    yield from command(f"G1 E{plan.length_mm:g} F{plan.feed_mm_min:g}", 2 * move_s + 60.0)
    yield from command("M400", 2 * move_s + 60.0)  # the question must wait until the filament stopped
    yield from command("G90")
    yield from command("M104 S0")


# --- pid -------------------------------------------------------------------------------------------

HEATERS = {"hotend": (0, "M301"), "bed": (-1, "M304")}


@dataclass(frozen=True, slots=True)
class PidPlan:
    """Autotune `heater` ("hotend" or "bed") at temp_c for `cycles` cycles."""

    heater: str = "hotend"
    temp_c: float = 200.0
    cycles: int = 8
    max_temp_c: float = 280.0


def pid(plan: PidPlan) -> Dialogue:
    """M303 autotune, apply the gains with M301/M304, save on confirmation (plan checked at once)."""
    if plan.heater not in HEATERS:
        raise CalibrationError(f"--heater {plan.heater!r}: hotend or bed")
    if not 40 <= plan.temp_c <= plan.max_temp_c:
        raise CalibrationError(f"--temp {plan.temp_c:g}: tune the {plan.heater} between 40 and "
                               f"{plan.max_temp_c:g} C")
    if not 3 <= plan.cycles <= 20:
        raise CalibrationError(f"--cycles {plan.cycles}: Marlin needs 3 to 20")
    return _pid(plan)


def _pid(plan: PidPlan) -> Dialogue:
    index, code = HEATERS[plan.heater]
    before = parse_pid((yield from command("M503")).lines, code)
    yield Say(f"PID autotune of the {plan.heater} at {plan.temp_c:g} C, {plan.cycles} cycles "
              "(several minutes; the heater must not be touched)...")
    timeout = plan.cycles * AUTOTUNE_S_PER_CYCLE + HEAT_TIMEOUT_S
    reply = yield from command(f"M303 E{index} S{plan.temp_c:g} C{plan.cycles} U1", timeout)
    try:
        kp, ki, kd = parse_autotune(reply.lines)
    except AutotuneFailed as exc:
        raise CalibrationError(f"{plan.heater} PID: {exc}; nothing was changed") from None
    yield from command(f"{code} P{kp:.2f} I{ki:.2f} D{kd:.2f}")
    new = f"P{kp:.2f} I{ki:.2f} D{kd:.2f}"
    old = "?" if before is None else "P{:.2f} I{:.2f} D{:.2f}".format(*before)
    yield Say(f"{plan.heater} PID: {old} -> {new} (applied with {code})")
    saved = yield from save_on_confirmation(f"the {plan.heater} PID {new}")
    return Outcome("pid", f"{plan.heater} PID {old} -> {new}", ((f"{plan.heater} PID", old, new),), saved,
                   {"heater": plan.heater, "kp": kp, "ki": ki, "kd": kd, "before": before})


# --- probe offset and levelling --------------------------------------------------------------------


def zoffset(probe: bool | None = None) -> Dialogue:
    """Read the probe's Z offset (M851), apply a new one, check it took, save on confirmation."""
    yield from require_probe(probe, "zoffset", "Z_PROBE")
    old = parse_m851((yield from command("M851")).lines).get("Z")
    yield Say(f"Probe Z offset now: {'?' if old is None else f'{old:.2f}'} mm")
    answer = yield from ask(Ask("z", "New probe Z offset in mm (more negative: nozzle closer to the bed)?",
                                number(*ZOFFSET_RANGE_MM, "mm")))
    value = float(answer)  # type: ignore[arg-type]
    yield from command(f"M851 Z{value:.2f}")
    now = parse_m851((yield from command("M851")).lines).get("Z")
    if now is None or abs(now - value) > 0.006:
        raise CalibrationError(f"M851 Z{value:.2f} did not take: the firmware now reports Z {now}")
    old_text = "?" if old is None else f"{old:.2f}"
    yield Say(f"Probe Z offset: {old_text} -> {now:.2f} mm")
    saved = yield from save_on_confirmation(f"the probe Z offset {now:.2f} mm")
    return Outcome("zoffset", f"probe Z offset {old_text} -> {now:.2f} mm",
                   (("probe Z offset", old_text, f"{now:.2f}"),), saved, {"old": old, "new": now})


def level(probe: bool | None = None) -> Dialogue:
    """Home, probe the bed (G29), report the mesh the firmware prints, save on confirmation."""
    yield from require_probe(probe, "level", "AUTOLEVEL")
    yield Say("Homing (G28)...")
    yield from command("G28", HOME_TIMEOUT_S)
    yield Say("Probing the bed (G29)...")
    reply = yield from command("G29", LEVEL_TIMEOUT_S)
    mesh = parse_mesh(reply.lines)
    if mesh is None:
        yield Say("The firmware printed no mesh (M420 V shows the stored one).")
        summary = "bed probed (no mesh printed)"
        data: dict[str, object] = {"points": []}
    else:
        yield Say(format_mesh(mesh))
        summary = f"bed probed: {len(mesh.z)} points, range {mesh.range_mm:.3f} mm"
        data = {"points": [list(p) for p in mesh.points], "z": list(mesh.z), "range_mm": mesh.range_mm}
    saved = yield from save_on_confirmation("the bed mesh")
    return Outcome("level", summary, (), saved, data)


# --- the daemon ------------------------------------------------------------------------------------


def member_job_refusal(status: Mapping[str, object], machine: str) -> str | None:
    """Why a routine must not run, from the daemon's `{"cmd": "status"}` reply; None when it may."""
    nested = status.get("status")  # the daemon's reply is {"ok": true, "status": {...}}
    if isinstance(nested, Mapping):
        status = nested
    state = str(status.get("state", "")).lower()
    if state not in RUNNING_STATES or _maintenance(status):
        return None
    name = status.get("machine") or machine
    return f"a member's job is running on {name}: calibrate after it ends"


def _maintenance(status: Mapping[str, object]) -> bool:
    """A technician's own (maintenance) session or job; unknown counts as a member's, to be safe."""
    if status.get("maintenance") is True:
        return True
    for key in ("session", "job"):
        part = status.get(key)
        if isinstance(part, Mapping) and True in (part.get("is_maintenance"), part.get("maintenance")):
            return True
    return False
