"""GRBL 1.1h's `$` system commands and extended real-time bytes (overrides, door, jog cancel).

Each `$` command answers as system.c does: `$$ $# $G $I $N $C $X $H $J= $SLP $RST= $Nx= $x=`,
with error:3 (unknown), error:2 (no number), error:8 (not idle) and the settings' own checks.
"""

from __future__ import annotations

from typing import Protocol

from simulators.grbl import codes as C
from simulators.grbl import report as grbl_report
from simulators.grbl.board import Board
from simulators.grbl.gcode import Action, GcodeError, Persistent
from simulators.grbl.words import read_float


class FirmwareLoop(Board, Protocol):
    """What the `$` commands use of the firmware loop (simulators.grbl.core.GrblCore matches it)."""

    report: grbl_report.StatusReporter
    startup_lines: list[str]
    clock: float
    pending: list[Action] | None
    pending_raw: str
    homing_done: bool

    def reply(self, code: int, raw: str | None = None) -> None: ...
    def jogging(self) -> bool: ...
    def run_gcode(self, text: str, raw: str, jog: bool) -> None: ...
    def reset_sequence(self) -> None: ...
    def run_pending(self, now: float) -> bool: ...


def _say(core: FirmwareLoop, *lines: str) -> None:
    for line in lines:
        core.out += (line + "\r\n").encode()


def _idle_or_alarm(core: FirmwareLoop) -> bool:
    state = core.report.state()
    return state in ("Idle", "Alarm")


def execute(core: FirmwareLoop, text: str, raw: str, now: float) -> None:
    """Run one `$` line (text already stripped and upper-cased) and answer it."""
    rest = text[1:]
    if rest == "":
        _say(core, C.HELP)
        core.reply(0, raw)
        return
    if rest.startswith("J"):
        _jog(core, rest, raw)
        return
    code = _query(core, rest) if rest[0] in "$GCX" else _configure(core, rest, raw)
    if code is None:
        return  # answered already (or a reset follows)
    core.reply(code, raw)


def _query(core: FirmwareLoop, rest: str) -> int | None:
    """`$$ $G $C $X`: anything after the letter is error:3."""
    if len(rest) > 1:
        return C.E_INVALID_STATEMENT
    if rest == "$":
        if core.planner.busy:
            return C.E_IDLE_ERROR
        _say(core, *grbl_report.settings_lines(core))
    elif rest == "G":
        _say(core, core.gc.modes_report())
    elif rest == "C":
        return _check_mode(core)
    elif rest == "X" and core.alarm and not core.critical:
        _say(core, C.MSG_UNLOCKED)
        core.alarm = False
    return 0


def _check_mode(core: FirmwareLoop) -> int | None:
    if core.check_mode:
        _say(core, C.MSG_DISABLED)
        core.reply(0, "$C")
        core.stats.resets += 1
        core.reset_sequence()
        return None  # answered already; the reset's banner follows the ok
    if core.report.state() != "Idle":
        return C.E_IDLE_ERROR
    core.check_mode = True
    _say(core, C.MSG_ENABLED)
    return 0


def _configure(core: FirmwareLoop, rest: str, raw: str) -> int | None:
    """Commands that need Idle or Alarm: `$# $H $I $N $SLP $RST= $x= $Nx=`."""
    if not _idle_or_alarm(core):
        return C.E_IDLE_ERROR
    head = rest[0]
    if head == "#":
        if rest != "#":
            return C.E_INVALID_STATEMENT
        _say(core, *grbl_report.parameter_lines(core))
        return 0
    if head == "H":
        return _home(core, rest, raw)
    if head == "I":
        return _build_info(core, rest)
    if rest == "SLP":
        core.reply(0, raw)
        _say(core, C.MSG_SLEEPING)
        core.planner.flush()
        core.sleeping = True
        return None
    if rest.startswith("RST="):
        return _restore(core, rest[4:], raw)
    if head == "N" and rest == "N":
        _say(core, *(f"$N{i}={line}" for i, line in enumerate(core.startup_lines)))
        return 0
    if head == "N":
        return _store_startup_line(core, rest[1:])
    return _store_setting(core, rest)


def _home(core: FirmwareLoop, rest: str, raw: str) -> int | None:
    if not core.settings[22]:
        return C.E_SETTING_DISABLED
    if rest != "H":
        return C.E_INVALID_STATEMENT
    core.pending = [Action("home")]
    core.pending_raw = raw
    core.run_pending(core.clock)
    return None


def finish_homing(core: FirmwareLoop) -> None:
    """Homing done: the axes stand `$27` off their switches; the alarm lock is lifted."""
    core.homing_done = False
    pulloff = core.settings[27]
    direction = int(core.settings[23])
    pos = [-core.settings[130 + i] + pulloff if direction & (1 << i) else -pulloff for i in range(3)]
    position = (pos[0], pos[1], pos[2])
    core.planner.set_position(position)
    core.gc.position = list(position)
    core.alarm = False
    run_startup_lines(core)


def _build_info(core: FirmwareLoop, rest: str) -> int:
    if rest == "I":
        _say(core, *grbl_report.build_info_lines(core))
        return 0
    if not rest.startswith("I="):
        return C.E_INVALID_STATEMENT
    core.build_info = rest[2:]
    return 0


def _restore(core: FirmwareLoop, what: str, raw: str) -> int | None:
    if what not in ("$", "#", "*"):
        return C.E_INVALID_STATEMENT
    if what in ("$", "*"):
        core.settings.clear()
        core.settings.update(C.default_settings(core.config.laser_mode))
    if what in ("#", "*"):
        fresh = Persistent()
        core.persistent.coords, core.persistent.g28, core.persistent.g30 = fresh.coords, fresh.g28, fresh.g30
    _say(core, C.MSG_RESTORING)
    core.reply(0, raw)
    core.stats.resets += 1
    core.reset_sequence()
    return None


def _number_then_equals(rest: str) -> tuple[float, str] | int:
    number = read_float(rest, 0)
    if number is None:
        return C.E_BAD_NUMBER_FORMAT
    value, pos = number
    if pos >= len(rest) or rest[pos] != "=":
        return C.E_INVALID_STATEMENT
    return value, rest[pos + 1 :]


def _store_setting(core: FirmwareLoop, rest: str) -> int:
    parsed = _number_then_equals(rest)
    if isinstance(parsed, int):
        return parsed
    number, tail = parsed
    value = read_float(tail, 0)
    if value is None:
        return C.E_BAD_NUMBER_FORMAT
    if value[1] != len(tail) or number > 255 or number != int(number):
        return C.E_INVALID_STATEMENT
    code = C.check_setting(int(number), value[0], core.settings)
    if code:
        return code
    core.settings[int(number)] = C.stored_value(int(number), value[0])
    return 0


def _store_startup_line(core: FirmwareLoop, rest: str) -> int:
    if core.report.state() != "Idle":
        return C.E_IDLE_ERROR
    parsed = _number_then_equals(rest)
    if isinstance(parsed, int):
        return parsed
    index, line = parsed
    if int(index) not in (0, 1):
        return C.E_INVALID_STATEMENT
    if line:
        try:  # checked by running it, as GRBL does before storing it
            core.gc.execute(line)
        except GcodeError as exc:
            return exc.code
    core.startup_lines[int(index)] = line
    return 0


def run_startup_lines(core: FirmwareLoop) -> None:
    """After a reset without alarm (or a homing cycle): run `$N0`/`$N1`, each answered `>line:ok`."""
    for line in core.startup_lines:
        if not line:
            continue
        try:
            for action in core.gc.execute(line):
                if action.move is not None and core.planner.free():
                    core.planner.push(action.move)
        except GcodeError as exc:
            _say(core, f">{line}:error:{exc.code}")
            continue
        _say(core, f">{line}:ok")


def _jog(core: FirmwareLoop, rest: str, raw: str) -> None:
    state = core.report.state()
    if state not in ("Idle", "Jog"):
        core.reply(C.E_IDLE_ERROR)
        return
    if not rest.startswith("J="):
        core.reply(C.E_INVALID_STATEMENT)
        return
    core.run_gcode(rest[2:], raw, jog=True)


def within_travel(core: FirmwareLoop, target: tuple[float, float, float]) -> bool:
    """Soft limits: machine space runs from 0 down to -max travel (or up, for axes homing negative)."""
    direction = int(core.settings[23])
    for i, value in enumerate(target):
        travel = core.settings[130 + i]
        low, high = (0.0, travel) if direction & (1 << i) else (-travel, 0.0)
        if not low - 1e-6 <= value <= high + 1e-6:
            return False
    return True


def extended_realtime(core: FirmwareLoop, byte: int) -> None:
    """Override bytes 0x90-0x9D, safety door 0x84, jog cancel 0x85, flood toggle 0xA0; others ignored."""
    p = core.planner
    feed = {0x90: None, 0x91: 10, 0x92: -10, 0x93: 1, 0x94: -1}
    spindle = {0x99: None, 0x9A: 10, 0x9B: -10, 0x9C: 1, 0x9D: -1}
    if byte in feed:
        step = feed[byte]
        p.feed_ovr = 100 if step is None else min(200, max(10, p.feed_ovr + step))
    elif byte in (0x95, 0x96, 0x97):
        p.rapid_ovr = {0x95: 100, 0x96: 50, 0x97: 25}[byte]
    elif byte in spindle:
        step = spindle[byte]
        core.spindle_ovr = 100 if step is None else min(200, max(10, core.spindle_ovr + step))
    elif byte == 0x84 and not core.alarm and not core.check_mode and not core.sleeping:
        if core.jogging():
            p.flush()  # the door cancels a jog and its queued motions
        core.door = True  # the beam is de-energized once stopped (report.beam_power)
        p.start_hold(core.settings[120])
    elif byte == 0x85 and core.jogging():
        p.flush()
    elif byte == 0xA0:
        core.gc.modal.flood = not core.gc.modal.flood
    else:
        return
    core.report.override_changed()
