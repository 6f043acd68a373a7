"""GRBL 1.1's g-code parser as the simulator needs it: check a block, update the modal state, say what to do.

Sans-I/O. `GcodeParser.execute(line)` takes a block already stripped the way GRBL's serial loop
strips it (no spaces or comments, upper case) and returns either an error code or a list of
actions (sync, dwell, moves, program end) for the firmware loop to carry out in order. Checks follow
the wiki's error table (error:1..38); arcs are cut into chords as GRBL's mc_arc does, because each
chord takes a planner block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from simulators.grbl import codes as C
from simulators.grbl.arcs import ArcError, arc_angle, chord_points, radius_arc_offsets
from simulators.grbl.words import GcodeError, Parsed, classify, parse_words

__all__ = ["Action", "GcodeError", "GcodeParser", "Modal", "Move", "Persistent"]

MM_PER_INCH = 25.4
AXES = "XYZ"
_PLANES = {17: (0, 1, 2), 18: (2, 0, 1), 19: (1, 2, 0)}  # (axis_0, axis_1, linear axis)


@dataclass
class Move:
    """One planner block: a straight line at a rate, with the laser's state while it runs."""

    start: tuple[float, float, float]
    end: tuple[float, float, float]
    length: float  # mm
    rate: float  # mm/min, already limited by the axes' max rates
    power: float = 0.0  # S while the beam is on during this move, else 0
    rapid: bool = False
    jog: bool = False
    probe_alarm: int = 0  # ALARM code raised when this probing move ends without contact
    spindle: float = 0.0  # S of M3/M4 while this block runs, in any motion mode (the output when `$32=0`)


@dataclass
class Action:
    """One step of a block, in GRBL's execution order."""

    kind: str  # "sync", "dwell", "move", "pgm_end", "pause"
    seconds: float = 0.0
    move: Move | None = None
    laser_on: bool = False  # dwell with the beam on (M3 constant power in a G1/G2/G3 mode)


@dataclass
class Modal:
    """The parser's modal state (what `$G` prints)."""

    motion: int = 0  # 0,1,2,3, 382..385 (G38.x), 80
    plane: int = 17
    inches: bool = False
    incremental: bool = False
    inverse_time: bool = False
    coord: int = 0  # 0..5: G54..G59
    spindle: int = 5  # 3, 4 or 5
    flood: bool = False
    feed: float = 0.0  # mm/min
    speed: float = 0.0  # S
    tool: int = 0
    program_flow: int = 0  # 0 running, 2 ended (M2/M30)


@dataclass
class Persistent:
    """What GRBL keeps in EEPROM across resets: work offsets and the G28/G30 positions."""

    coords: list[list[float]] = field(default_factory=lambda: [[0.0, 0.0, 0.0] for _ in range(6)])
    g28: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    g30: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])


class GcodeParser:
    """GRBL's g-code state: modal groups, position, offsets; `execute` runs one block."""

    def __init__(self, settings: dict[int, float], persistent: Persistent | None = None) -> None:
        self.settings = settings
        self.persistent = persistent or Persistent()
        self.reset((0.0, 0.0, 0.0))

    def reset(self, position: tuple[float, float, float]) -> None:
        """gc_init on a reset: default modes, G92 cleared, position synced with the machine."""
        self.modal = Modal()
        self.position = list(position)
        self.g92 = [0.0, 0.0, 0.0]
        self.tlo = 0.0
        self.wco_changed = True

    def wco(self) -> tuple[float, float, float]:
        """The work coordinate offset: G54..59 + G92 + tool length offset (on Z)."""
        cs = self.persistent.coords[self.modal.coord]
        return (cs[0] + self.g92[0], cs[1] + self.g92[1], cs[2] + self.g92[2] + self.tlo)

    def execute(self, line: str, *, jog: bool = False) -> list[Action]:
        """Check one block and commit it; raises GcodeError(code) without changing anything on error."""
        parsed = classify(parse_words(line), jog)
        return _Block(self, parsed, jog).run()

    def modes_report(self) -> str:
        """The `[GC:...]` line of `$G`."""
        m = self.modal
        motion = {382: "38.2", 383: "38.3", 384: "38.4", 385: "38.5"}.get(m.motion, str(m.motion))
        parts = [
            f"G{motion}",
            f"G{54 + m.coord}",
            f"G{m.plane}",
            "G20" if m.inches else "G21",
            "G91" if m.incremental else "G90",
            "G93" if m.inverse_time else "G94",
        ]
        if m.program_flow:
            parts.append(f"M{m.program_flow}")
        parts += [f"M{m.spindle}", "M8" if m.flood else "M9", f"T{m.tool}"]
        scale = MM_PER_INCH if m.inches else 1.0
        parts += [f"F{m.feed / scale:.0f}", f"S{m.speed:.0f}"]
        return "[GC:" + " ".join(parts) + "]"


class _Block:
    """One block's checks and execution against a parser (GRBL's gc_execute_line, in its order)."""

    def __init__(self, gc: GcodeParser, parsed: Parsed, jog: bool) -> None:
        self.gc = gc
        self.p = parsed
        self.w = parsed.words
        self.jog = jog
        self.m = Modal(**vars(gc.modal))  # the new modal state, committed at the end
        self.used: set[str] = {"N", "F", "S", "T"}
        self.actions: list[Action] = []
        self.g92 = list(gc.g92)
        self.tlo = gc.tlo
        self.wco_changed = False
        self.axes_taken = False  # G43.1 used the Z word

    def run(self) -> list[Action]:
        """Check everything, then commit the new state and return the actions."""
        self._modes()
        self._feed_speed_tool()
        self._spindle_coolant()
        self._dwell()
        self._offsets()
        position = self._non_modal_and_motion()
        unused = set(self.w.values) - self.used
        if unused:
            raise GcodeError(C.E_UNUSED_WORDS)
        self._program_flow()
        if not self.jog:  # a jog leaves the parser's modes as they were
            self.gc.modal = self.m
        self.gc.position = list(position)
        self.gc.g92 = self.g92
        self.gc.tlo = self.tlo
        self.gc.wco_changed = self.gc.wco_changed or self.wco_changed
        return self.actions

    # -- modes, feed, spindle -------------------------------------------------------------------

    def _modes(self) -> None:
        mod = self.p.modal
        if "plane" in mod:
            self.m.plane = mod["plane"]
        if "units" in mod:
            self.m.inches = mod["units"] == 20
        if "distance" in mod:
            self.m.incremental = mod["distance"] == 91
        if "feed_mode" in mod:
            self.m.inverse_time = mod["feed_mode"] == 93
        if "coord" in mod and mod["coord"] - 54 != self.m.coord:
            self.m.coord = mod["coord"] - 54
            self._wco_change()
        if self.p.motion is not None and not self.jog:
            self.m.motion = self.p.motion
        if self.p.non_modal == 53 and (1 if self.jog else self.m.motion) not in (0, 1):
            raise GcodeError(C.E_G53_INVALID_MOTION_MODE)
        if mod.get("tlo") == 431:
            self._tlo_dynamic()
        elif mod.get("tlo") == 49 and self.tlo:
            self.tlo = 0.0
            self._wco_change()

    def _tlo_dynamic(self) -> None:
        axes = set(self.w.values) & set(AXES)
        if axes != {"Z"}:
            raise GcodeError(37 if axes else C.E_NO_AXIS_WORDS)
        self.used.add("Z")
        if self.p.axis_command:
            raise GcodeError(C.E_AXIS_COMMAND_CONFLICT)
        self.tlo = self._mm(self.w.values["Z"])
        self.axes_taken = True
        self._wco_change()

    def _feed_speed_tool(self) -> None:
        v = self.w.values
        if "N" in v and v["N"] > 9_999_999:
            raise GcodeError(C.E_INVALID_LINE_NUMBER)
        if "T" in v:
            if v["T"] > 255:
                raise GcodeError(C.E_MAX_VALUE_EXCEEDED)
            self.m.tool = int(v["T"])
        if "S" in v:
            self.m.speed = v["S"]
        if self.m.inverse_time:
            self.feed = v.get("F", 0.0)  # 1/min, needed on every motion block
        elif "F" in v:
            self.m.feed = self._mm(v["F"])
            self.feed = self.m.feed
        else:
            self.feed = self.m.feed

    def _spindle_coolant(self) -> None:
        if self.p.m_spindle is not None and self.p.m_spindle != self.m.spindle:
            self.m.spindle = self.p.m_spindle
            self._sync()
        if self.p.m_coolant is not None and (self.p.m_coolant == 8) != self.m.flood:
            self.m.flood = self.p.m_coolant == 8
            self._sync()

    def _dwell(self) -> None:
        if self.p.non_modal != 4:
            return
        if "P" not in self.w.values:
            raise GcodeError(C.E_VALUE_WORD_MISSING)
        self.used.add("P")
        on = self.m.spindle == 3 and self.m.motion in (1, 2, 3) and self.m.speed > 0
        self._sync()
        self.actions.append(Action("dwell", seconds=self.w.values["P"], laser_on=on))

    # -- offsets and non-modal commands --------------------------------------------------------

    def _offsets(self) -> None:
        nm = self.p.non_modal
        if nm == 10:
            self._g10()
        elif nm == 92:
            axes = self._axis_words()
            if not axes:
                raise GcodeError(C.E_NO_AXIS_WORDS)
            cs = self.gc.persistent.coords[self.m.coord]
            for i, val in axes.items():
                tlo = self.tlo if i == 2 else 0.0
                self.g92[i] = self.gc.position[i] - cs[i] - self._mm(val) - tlo
            self._wco_change()
        elif nm == 921:
            self.g92 = [0.0, 0.0, 0.0]
            self._wco_change()
        elif nm in (281, 301):
            self._sync()
            target = self.gc.persistent.g28 if nm == 281 else self.gc.persistent.g30
            target[:] = self.gc.position

    def _g10(self) -> None:
        v = self.w.values
        if "L" not in v or "P" not in v:
            raise GcodeError(C.E_VALUE_WORD_MISSING)
        self.used |= {"L", "P"}
        if v["L"] not in (2, 20):
            raise GcodeError(C.E_UNSUPPORTED_COMMAND)
        if v["P"] != int(v["P"]):
            raise GcodeError(C.E_COMMAND_VALUE_NOT_INTEGER)
        index = int(v["P"])
        if index > 6:
            raise GcodeError(C.E_UNSUPPORTED_COORD_SYS)
        index = self.m.coord if index == 0 else index - 1
        axes = self._axis_words()
        if not axes:
            raise GcodeError(C.E_NO_AXIS_WORDS)
        self._sync()  # an EEPROM write waits for the planner to empty
        cs = self.gc.persistent.coords[index]
        for i, val in axes.items():
            if v["L"] == 2:
                cs[i] = self._mm(val)
            else:
                cs[i] = self.gc.position[i] - self.g92[i] - (self.tlo if i == 2 else 0.0) - self._mm(val)
        if index == self.m.coord:
            self._wco_change()

    def _non_modal_and_motion(self) -> list[float]:
        position = list(self.gc.position)
        nm = self.p.non_modal
        if nm in (28, 30):
            axes = self._axis_words()
            if axes:
                mid = self._target(position, axes)
                self._line(position, mid, rapid=True)
                position = mid
            home = list(self.gc.persistent.g28 if nm == 28 else self.gc.persistent.g30)
            self._line(position, home, rapid=True)
            return home
        if self.p.axis_command == "non_modal" or self.axes_taken:
            return position
        return self._motion(position)

    # -- motion -------------------------------------------------------------------------------

    def _motion(self, position: list[float]) -> list[float]:
        axes = self._axis_words(mark=False)
        motion = self.m.motion if not self.jog else 1
        if motion == 80:
            if axes:
                raise GcodeError(C.E_AXIS_WORDS_EXIST)
            return position
        if not axes and self.p.motion is None:
            return position
        self.used |= {AXES[i] for i in axes}
        if motion != 0 and self.feed <= 0:
            raise GcodeError(C.E_UNDEFINED_FEED_RATE)
        if motion in (2, 3):
            return self._arc(position, axes, clockwise=motion == 2)
        if not axes:
            if motion in (382, 383, 384, 385):
                raise GcodeError(C.E_NO_AXIS_WORDS)
            return position
        target = self._target(position, axes)
        if motion in (382, 383, 384, 385):
            if target == position:
                raise GcodeError(C.E_INVALID_TARGET)
            self._line(position, target, probe_alarm=5 if motion in (382, 384) else 0)
        else:
            self._line(position, target, rapid=motion == 0)
        return target

    def _arc(self, position: list[float], axes: dict[int, float], clockwise: bool) -> list[float]:
        a0, a1, lin = _PLANES[self.m.plane]
        if not axes:
            raise GcodeError(C.E_NO_AXIS_WORDS)
        if a0 not in axes and a1 not in axes:
            raise GcodeError(C.E_NO_AXIS_WORDS_IN_PLANE)
        target = self._target(position, axes)
        x, y = target[a0] - position[a0], target[a1] - position[a1]
        if "R" in self.w.values:
            self.used.add("R")
            try:
                off0, off1, radius = radius_arc_offsets(x, y, self._mm(self.w.values["R"]), clockwise)
            except ArcError as exc:
                raise GcodeError(exc.code) from None
        else:
            off0, off1, radius = self._offset_arc(target, position, a0, a1)
        center = (position[a0] + off0, position[a1] + off1)
        angle = arc_angle(-off0, -off1, target[a0] - center[0], target[a1] - center[1], clockwise)
        self._arc_chords(position, target, center, radius, angle, (a0, a1, lin))
        return target

    def _offset_arc(
        self, target: list[float], position: list[float], a0: int, a1: int
    ) -> tuple[float, float, float]:
        letters = "IJK"
        v = self.w.values
        if letters[a0] not in v and letters[a1] not in v:
            raise GcodeError(C.E_NO_OFFSETS_IN_PLANE)
        self.used |= {letters[i] for i in range(3) if letters[i] in v}
        off0, off1 = self._mm(v.get(letters[a0], 0.0)), self._mm(v.get(letters[a1], 0.0))
        radius = math.hypot(off0, off1)
        end_r = math.hypot(target[a0] - position[a0] - off0, target[a1] - position[a1] - off1)
        delta = abs(end_r - radius)
        if delta > 0.005 and (delta > 0.5 or delta > 0.001 * radius):
            raise GcodeError(C.E_INVALID_TARGET)
        return off0, off1, radius

    def _arc_chords(self, start, target, center, radius, angle, plane) -> None:
        """Each chord of the arc takes a planner block, as in mc_arc."""
        points = chord_points(start, target, center, radius, angle, plane, self.gc.settings[12] or 0.002)
        prev = list(start)
        for point in points:
            self._line(prev, point, arc_share=1 / len(points))
            prev = point

    def _line(self, start, end, *, rapid=False, probe_alarm=0, arc_share=1.0) -> None:
        delta = [e - s for s, e in zip(start, end, strict=True)]
        length = math.sqrt(sum(d * d for d in delta))
        if length <= 0:
            return
        limit = min(self.gc.settings[110 + i] * length / abs(d) for i, d in enumerate(delta) if d)
        if rapid:
            rate = limit
        elif self.m.inverse_time:
            rate = min(length * self.feed / arc_share, limit)
        else:
            rate = min(self.feed, limit)
        beam = not rapid and not probe_alarm and self.m.motion in (1, 2, 3) and self.m.spindle in (3, 4)
        power = self.m.speed if beam and self.m.speed > 0 and not self.jog else 0.0
        spindle = self.m.speed if self.m.spindle in (3, 4) and not self.jog else 0.0
        move = Move(tuple(start), tuple(end), length, rate, power, rapid, self.jog, probe_alarm, spindle)
        self.actions.append(Action("move", move=move))

    # -- helpers -------------------------------------------------------------------------------

    def _program_flow(self) -> None:
        flow = self.p.m_flow
        if flow == 0:
            self._sync()
            self.actions.append(Action("pause"))
        elif flow in (2, 30):
            self._sync()
            self.m.motion, self.m.plane, self.m.incremental = 1, 17, False
            self.m.inverse_time, self.m.spindle, self.m.flood = False, 5, False
            if self.m.coord:
                self.m.coord = 0
                self._wco_change()
            self.actions.append(Action("pgm_end"))

    def _axis_words(self, mark: bool = True) -> dict[int, float]:
        axes = {i: self.w.values[a] for i, a in enumerate(AXES) if a in self.w.values}
        if mark:
            self.used |= {AXES[i] for i in axes}
        return axes

    def _target(self, position: list[float], axes: dict[int, float]) -> list[float]:
        target = list(position)
        wco = (*self.gc.persistent.coords[self.m.coord],)
        for i, val in axes.items():
            mm = self._mm(val)
            if self.p.non_modal == 53:
                target[i] = mm
            elif self.m.incremental:
                target[i] = position[i] + mm
            else:
                target[i] = mm + wco[i] + self.g92[i] + (self.tlo if i == 2 else 0.0)
        return target

    def _mm(self, value: float) -> float:
        return value * MM_PER_INCH if self.m.inches else value

    def _sync(self) -> None:
        if not self.actions or self.actions[-1].kind != "sync":
            self.actions.append(Action("sync"))

    def _wco_change(self) -> None:
        self.wco_changed = True
        self._sync()
