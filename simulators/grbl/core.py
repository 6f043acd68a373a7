"""GRBL 1.1h's firmware loop as a pure model: bytes in, bytes out, time passed in as `now`.

`GrblCore` is what sits behind the UART: real-time bytes are acted on the moment they arrive
(`on_byte`), everything else waits in the RX buffer until the main loop (`poll`) pulls it into its
80-byte line buffer, executes the line and answers `ok` / `error:N`. The main loop stops pulling
bytes while a line waits (planner full, a sync before M3/M5/G4, a dwell, homing), so a host that
does not count characters overflows the RX buffer and loses bytes, as with a real board.

The RX buffer is anything with `rx_available()`, `rx_read(n)` and `rx_clear()`: the simulator's
`Wire`, or `LocalRx` here for unit tests. `feed(data, now)` is the unit tests' shortcut: it plays
the bytes in one at a time as a fast UART would and returns the reply bytes.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from simulators.grbl import codes as C
from simulators.grbl import report as grbl_report
from simulators.grbl import system as grbl_system
from simulators.grbl.gcode import Action, GcodeError, GcodeParser, Persistent
from simulators.grbl.motion import Planner, Tally
from simulators.grbl.state import GrblConfig, GrblStats, LineInput, LocalRx, RxBuffer

__all__ = ["GrblConfig", "GrblCore", "GrblStats", "LocalRx"]

REALTIME_STATUS = ord("?")
REALTIME_HOLD = ord("!")
REALTIME_CYCLE_START = ord("~")
REALTIME_RESET = 0x18
REALTIME_BYTES = frozenset({REALTIME_STATUS, REALTIME_HOLD, REALTIME_CYCLE_START, REALTIME_RESET})
LINE_ENDS = (0x0A, 0x0D)


class GrblCore:
    """GRBL 1.1h behind its UART: see the module docstring."""

    def __init__(self, config: GrblConfig | None = None, rx: RxBuffer | None = None,
                 stats: GrblStats | None = None) -> None:  # fmt: skip
        self.config = config or GrblConfig()
        self.stats = stats if stats is not None else GrblStats()
        self.rx: RxBuffer = rx if rx is not None else LocalRx(self.config.rx_buffer, self.stats)
        self.settings = C.default_settings(self.config.laser_mode)
        self.persistent = Persistent()
        self.startup_lines = ["", ""]
        self.build_info = ""
        self.executed: list[str] = []
        self.on_executed: Callable[[str], None] | None = None
        self.on_drop_connection: Callable[[], None] | None = None
        self.out = bytearray()
        self.tally = Tally()
        self.planner = Planner(self.config.planner_blocks - 1, self.tally)
        self.gc = GcodeParser(self.settings, self.persistent)
        self.report = grbl_report.StatusReporter(self)
        self.lines_seen = 0
        self.clock = 0.0
        self.boot_until: float | None = None
        self.silent = False
        self.alarm = False
        self.spindle_ovr = 100
        # the main loop's state, cleared by every reset (see _clear_loop_state)
        self.line_in = LineInput()
        self.pending: list[Action] | None = None
        self.pending_raw = ""
        self.dwell_left: float | None = None
        self.dwell_laser = False
        self.homing_left: float | None = None
        self.homing_done = False
        self.critical = False
        self.sleeping = False
        self.check_mode = False
        self.door = False
        self._power_up(homing_lock=self.config.homing_lock)

    # -- the host's side -------------------------------------------------------------------------

    def feed(self, data: bytes, now: float) -> bytes:
        """Unit tests: play bytes in as a fast UART would (polling after each line end), return replies."""
        if not isinstance(self.rx, LocalRx):
            raise TypeError("feed() needs the LocalRx buffer; a Wire delivers bytes itself")
        for byte in data:
            if not self.on_byte(byte, now):
                self.rx.put(byte)
                if byte in LINE_ENDS or self.rx.rx_available() >= self.rx.capacity:
                    self.poll(now)
        self.poll(now)
        return self.take_output()

    def take_output(self) -> bytes:
        """The reply bytes produced so far (and forget them)."""
        data, self.out = bytes(self.out), bytearray()
        return data

    def host_opened(self, now: float) -> None:
        """The host opened the port: DTR resets the board, which greets `boot_s` later."""
        self.clock = max(self.clock, now)
        self._power_up(homing_lock=self.config.homing_lock)
        self.boot_until = now + self.config.boot_s

    # -- real-time bytes -------------------------------------------------------------------------

    def on_byte(self, byte: int, now: float) -> bool:
        """A byte arrived; True if it was a real-time command (or lost), so it never enters the RX buffer."""
        if self.boot_until is not None:
            if now < self.boot_until:
                self.stats.boot_drops += 1
                return True
            self._finish_boot(now)
        realtime = byte in REALTIME_BYTES or byte >= 0x80
        if not realtime or self.silent:
            return realtime
        self.advance(now)
        if byte == REALTIME_RESET:
            self.soft_reset(now)
        elif byte == REALTIME_STATUS:
            self.report.request()
        elif byte == REALTIME_HOLD:
            self.feed_hold()
        elif byte == REALTIME_CYCLE_START:
            self.cycle_start()
        else:
            grbl_system.extended_realtime(self, byte)
        return True

    def beam_power(self) -> float:
        """The laser output now (S units, 0: off); see simulators.grbl.report.beam_power."""
        return grbl_report.beam_power(self)

    def feed_hold(self) -> None:
        """`!`: decelerate to a stop (Hold:1, then Hold:0); a jog is cancelled instead."""
        if self.alarm or self.check_mode or self.homing_left is not None or self.sleeping:
            return
        if self.planner.busy and self.planner.blocks[0].jog:
            self.planner.flush()
            return
        self.planner.start_hold(self.settings[120])

    def cycle_start(self) -> None:
        """`~`: resume from a completed hold (or a closed door); ignored while still decelerating."""
        if self.planner.hold == "held":
            self.planner.resume()
            self.door = False

    # -- the main loop -----------------------------------------------------------------------------

    def poll(self, now: float) -> float | None:
        """Advance to `now`, take and run whole lines from the RX buffer; return when to be polled next."""
        if self.boot_until is not None:
            if now < self.boot_until:
                return self.boot_until
            self._finish_boot(now)
        self.advance(now)
        while not self.silent and not self.critical and not self.sleeping:
            if self.pending is not None and not self.run_pending(now):
                break
            line = self._take_line()
            if line is None:
                break
            self._handle_line(line, now)
        return self._next_deadline()

    def advance(self, now: float) -> None:
        """Let machine time pass up to `now` (scaled by time_scale; 0 runs everything at once)."""
        dt = max(0.0, now - self.clock)
        self.clock = max(self.clock, now)
        scale = self.config.time_scale
        machine_dt = dt / scale if scale > 0 else math.inf
        self.planner.advance(machine_dt)
        self._count_tally()
        while self.planner.probe_alarms:
            self.planner.probe_alarms.pop(0)
            self.raise_alarm(5)
        if self.planner.hold != "held" or self.homing_left is not None:
            self._advance_wait(machine_dt)

    def _advance_wait(self, machine_dt: float) -> None:
        """Dwells and homing count down in machine time (a hold pauses a dwell)."""
        if self.dwell_left is not None:
            spent = min(machine_dt, self.dwell_left)
            self.dwell_left -= spent
            if self.dwell_laser:
                self.stats.laser_dwell_s += spent
        if self.homing_left is not None:
            self.homing_left -= min(machine_dt, self.homing_left)

    def _count_tally(self) -> None:
        t = self.tally
        self.stats.motion_s, self.stats.distance_mm = t.motion_s, t.distance_mm
        self.stats.laser_on_s, self.stats.laser_distance_mm = t.laser_on_s, t.laser_distance_mm

    def _next_deadline(self) -> float | None:
        scale = self.config.time_scale
        waits = [self.planner.seconds_to_next_event()]
        if self.dwell_left is not None and self.planner.hold != "held":
            waits.append(self.dwell_left)
        if self.homing_left is not None:
            waits.append(self.homing_left)
        wait = min(waits)
        if math.isinf(wait):
            return None
        return self.clock + max(wait * scale, 1e-4)

    # -- lines ---------------------------------------------------------------------------------------

    def _take_line(self) -> LineInput | None:
        """Pull RX bytes into the line buffer until a line end; None if the line is not complete yet."""
        while self.rx.rx_available():
            byte = self.rx.rx_read(1)[0]
            if byte in LINE_ENDS:
                line, self.line_in = self.line_in, LineInput()
                return line
            self._add_char(self.line_in, byte)
        return None

    def _add_char(self, line: LineInput, byte: int) -> None:
        line.raw.append(byte)
        ch = chr(byte)
        if line.paren or line.semicolon:
            if ch == ")" and line.paren:
                line.paren = False
        elif byte <= 0x20 or ch == "/":
            pass  # blanks and control characters are thrown away; block delete is not supported
        elif ch == "(":
            line.paren = True
        elif ch == ";":
            line.semicolon = True
        elif len(line.text) >= self.config.line_buffer - 1:
            line.overflow = True
        else:
            line.text.append(ch.upper())

    def _handle_line(self, line: LineInput, now: float) -> None:
        self.lines_seen += 1
        self.stats.lines_received += 1
        if self._inject_fault(self.lines_seen, now):
            return
        text = "".join(line.text)
        raw = line.raw.decode("latin-1")
        if line.overflow:
            self.reply(C.E_OVERFLOW)
        elif not text:
            self.reply(0)
        elif text[0] == "$":
            grbl_system.execute(self, text, raw, now)
        elif self.alarm or self.jogging():
            self.reply(C.E_SYSTEM_GC_LOCK)
        else:
            self.run_gcode(text, raw, jog=False)

    def run_gcode(self, text: str, raw: str, jog: bool) -> None:
        """Parse one block; run its actions now or leave them pending (the `ok` comes when they are done)."""
        try:
            actions = self.gc.execute(text, jog=jog)
        except GcodeError as exc:
            self.reply(exc.code)
            return
        if self.check_mode:
            actions = []
        if self._soft_limit_hit(actions, jog):
            return
        self.pending = actions
        self.pending_raw = raw
        self.run_pending(self.clock)

    def run_pending(self, now: float) -> bool:
        """Carry out the pending line's actions in order; True once its `ok` went out."""
        assert self.pending is not None
        while self.pending:
            if not self._run_action(self.pending[0]):
                return False
            self.pending.pop(0)
        self.pending = None
        if self.homing_done:
            grbl_system.finish_homing(self)
        self.reply(0, self.pending_raw)
        return True

    def _run_action(self, action: Action) -> bool:
        if self.config.time_scale <= 0 and (self.planner.moving or self.dwell_left is not None):
            self.advance(self.clock)  # instant machine: what is queued is already done
        if action.kind == "sync":
            return not self.planner.busy and self.homing_left is None
        if action.kind == "move":
            if not self.planner.free():
                return False
            assert action.move is not None
            self.planner.push(action.move)
            return True
        if action.kind == "dwell":
            return self._dwell(action)
        if action.kind == "home":
            return self._homing_step()
        if action.kind == "pause":
            self.planner.start_hold(self.settings[120])
        elif action.kind == "pgm_end":
            self.out += (C.MSG_PGM_END + "\r\n").encode()
        return True

    def _dwell(self, action: Action) -> bool:
        if self.dwell_left is None:
            self.dwell_left = action.seconds
            self.dwell_laser = action.laser_on and self.settings[32] > 0
            if self.config.time_scale <= 0:
                self._advance_wait(math.inf)
        if self.dwell_left > 1e-12:
            return False
        self.dwell_left = None
        return True

    def _homing_step(self) -> bool:
        if self.homing_left is None:
            self.homing_left = self.config.homing_s if self.config.time_scale > 0 else 0.0
        if self.homing_left > 1e-12:
            return False
        self.homing_left = None
        self.homing_done = True
        return True

    def reply(self, code: int, raw: str | None = None) -> None:
        """`ok` (code 0) or `error:N` for the line just handled; an ok'd command is recorded."""
        if code:
            self.stats.errors += 1
            self.out += f"error:{code}\r\n".encode()
            return
        self.stats.oks += 1
        self.out += b"ok\r\n"
        if raw is not None and raw.strip() and not (self.check_mode and not raw.lstrip().startswith("$")):
            self.executed.append(raw)
            if self.on_executed is not None:
                self.on_executed(raw)

    def _soft_limit_hit(self, actions: list[Action], jog: bool) -> bool:
        if not self.settings[20]:
            return False
        for action in actions:
            if action.move is not None and not grbl_system.within_travel(self, action.move.end):
                if jog:
                    self.reply(15)
                else:
                    self.raise_alarm(C.A_SOFT_LIMIT)
                return True
        return False

    # -- states, alarms, resets ------------------------------------------------------------------

    def jogging(self) -> bool:
        """True while jog blocks run (g-code is locked out then)."""
        return self.planner.busy and self.planner.blocks[0].jog

    def raise_alarm(self, code: int) -> None:
        """ALARM:N as GRBL raises it: critical ones halt until reset, resetting ones reset the board."""
        self.stats.alarms += 1
        self.out += f"ALARM:{code}\r\n".encode()
        self.alarm = True
        self.pending = None
        self.planner.flush()
        self.dwell_left = self.homing_left = None
        if code in C.CRITICAL_ALARMS:
            self.out += (C.MSG_RESET_TO_CONTINUE + "\r\n").encode()
            self.critical = True
        elif code in C.RESETTING_ALARMS:
            self.reset_sequence()

    def soft_reset(self, now: float) -> None:
        """Ctrl-X: stop at once, beam off, flush every buffer, banner; ALARM:3 if the axes were moving."""
        self.stats.resets += 1
        if self.homing_left is not None:
            self.raise_alarm(C.A_HOMING_FAIL_RESET)
            return
        if self.planner.moving or self.jogging():
            self.raise_alarm(C.A_ABORT_CYCLE)
            return
        self.reset_sequence()

    def reset_sequence(self) -> None:
        """What GRBL's main() does after an abort: re-initialise everything but position and EEPROM."""
        self.alarm = self.alarm or self.sleeping
        self.planner.flush()
        self.rx.rx_clear()
        self._clear_loop_state()
        self.gc.reset(self.planner.position())
        self.planner.feed_ovr = self.planner.rapid_ovr = self.spindle_ovr = 100
        self.out += C.BANNER.encode()
        self._after_banner()

    def _after_banner(self) -> None:
        if self.alarm:
            self.out += (C.MSG_UNLOCK + "\r\n").encode()
        else:
            grbl_system.run_startup_lines(self)

    def _clear_loop_state(self) -> None:
        self.line_in = LineInput()
        self.pending = None
        self.pending_raw = ""
        self.dwell_left = None
        self.dwell_laser = False
        self.homing_left = None
        self.homing_done = False
        self.critical = False
        self.sleeping = False
        self.check_mode = False
        self.door = False
        self.report.reset()

    def _power_up(self, homing_lock: bool) -> None:
        """Power-on (or the DTR reset): position 0, parser defaults; the banner waits for `boot_s`."""
        self.alarm = homing_lock and bool(self.settings[22])
        self.planner.set_position((0.0, 0.0, 0.0))
        self.planner.feed_ovr = self.planner.rapid_ovr = self.spindle_ovr = 100
        self._clear_loop_state()
        self.gc.reset((0.0, 0.0, 0.0))

    def _finish_boot(self, now: float) -> None:
        self.boot_until = None
        self.out += C.BANNER.encode()
        self._after_banner()

    def _inject_fault(self, n: int, now: float) -> bool:
        """Faults fire once, when line n is taken; True if the line is consumed by the fault."""
        cfg = self.config
        if n == cfg.drop_connection_at_line:
            if self.on_drop_connection is not None:
                self.on_drop_connection()
            self.silent = True
            return True
        if n == cfg.silence_at_line:
            self.silent = True
            return True
        if n == cfg.reset_at_line:
            self.stats.resets += 1
            self._power_up(homing_lock=cfg.homing_lock)
            self.rx.rx_clear()
            self._finish_boot(now)
            return True
        if n == cfg.alarm_at_line:
            self.raise_alarm(cfg.alarm_code)
            if cfg.alarm_code not in C.CRITICAL_ALARMS | C.RESETTING_ALARMS:
                self.reply(C.E_SYSTEM_GC_LOCK)
            return True
        if n == cfg.error_at_line:
            self.reply(cfg.error_code)
            return True
        return False
