"""The Marlin 2.x firmware model that the wire drives: serial reading, command queue, planner, faults.

Sans-I/O apart from the wire it is attached to: `poll(now)` advances the printer to `now` (monotonic
seconds) and returns when it wants to be polled again. The G-code handlers are in marlin_commands.

Timing, as Marlin's main loop does it: lines are read from the RX buffer only while the firmware is
not blocked in a command and only while the command queue (BUFSIZE) has room; the rest of the host's
bytes wait in the RX buffer (and past it, are dropped). A command's `ok` goes out when it has been
processed; a move is processed when it enters the planner, which blocks while the planner is full.
Host-facing intervals (busy keepalive, temperature lines, M155) run on wall time; physical processes
(moves, heating, dwell, homing, autotune) take their physical time multiplied by `time_scale`.

"Line" in the injected faults is the N number of a numbered line. A fault fires once, when the line
with that N comes to run (every earlier line processed and acknowledged); resend-without-ok fires
when that line is read, as the line checks do.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass

from simulators.marlin.commands import CommandsMixin, Handler, command_code
from simulators.marlin.lines import EmergencyParser, LineChecker, Verdict, strip_comment
from simulators.marlin.options import MarlinConfig, MarlinFaults, MarlinStats
from simulators.marlin.planner import Planner
from simulators.marlin.settings import Settings, boot_banner
from simulators.marlin.thermal import bed, hotend
from simulators.marlin.virtual import VirtualPrinterChecker
from simulators.wire import Wire

MAX_CMD_SIZE = 96  # Marlin ignores characters past this in one line
ACTIONS = ("pause", "resume", "cancel")

__all__ = ["ACTIONS", "MarlinConfig", "MarlinFaults", "MarlinFirmware", "MarlinStats", "Planner"]


@dataclass
class Queued:
    """One command in the queue (the ring buffer of BUFSIZE commands)."""

    command: str
    line_number: int | None


class MarlinFirmware(CommandsMixin):
    """The firmware end of a Wire (implements simulators.wire.FirmwareModel)."""

    def __init__(
        self,
        config: MarlinConfig | None = None,
        stats: MarlinStats | None = None,
        on_executed: Callable[[str], None] | None = None,
    ) -> None:
        self.cfg = config or MarlinConfig()
        self.stats = stats or MarlinStats()
        self.on_executed = on_executed or (lambda _command: None)
        self.rng = random.Random(self.cfg.seed)
        self.wire: Wire | None = None
        self.now = 0.0
        self.halted = False  # kill(): nothing more is read or said
        self._boot_at: float | None = None
        self._fired: set[str] = set()
        self._physics_at: float | None = None
        self.stored: Settings | None = None  # the EEPROM image (None: never saved)
        self._power_on()

    def _power_on(self) -> None:
        """The state a (re)started board has."""
        self.checker: LineChecker = (
            VirtualPrinterChecker() if self.cfg.virtual_printer else LineChecker(self.cfg.faithful_cuts)
        )
        self.emergency = EmergencyParser()
        self.queue: deque[Queued] = deque()
        self.current: Generator[float, None, str | None] | None = None
        self.planner = Planner(self.cfg.planner_blocks)
        self.line_buf = bytearray()
        self._ignore_next_line = False  # the virtual printer's resend_with_timeout
        # gcode_line_error blocked writing its `Error:` line: (when the UART has it all, `ok` after Resend)
        self._refusing: tuple[float, bool] | None = None
        old = getattr(self, "hotend", None), getattr(self, "bed", None)
        self.hotend, self.bed = hotend(), bed()  # heaters off; a reset does not cool them at once
        for heater, before in zip((self.hotend, self.bed), old, strict=True):
            heater.temp = before.temp if before is not None else heater.temp
        self.settings = self.stored.copy() if self.stored else Settings()
        self.autoreport_s = 0.0
        self.next_autoreport = 0.0
        self.busy_next = 0.0
        self.wait_for_heatup = False
        self.init_motion()

    # ---- FirmwareModel --------------------------------------------------------------------------

    def attach(self, wire: Wire) -> None:
        """Keep the wire (called once by the Wire)."""
        self.wire = wire
        if not self.cfg.greet_on_open:
            self._boot_at = 0.0

    def on_host_open(self, now: float) -> None:
        """The port was opened: DTR resets the board, which greets `boot_s` later."""
        if self.cfg.greet_on_open and not self.halted:
            self._boot_at = now + self.cfg.boot_s

    def on_wire_byte(self, byte: int, now: float) -> bool:
        """The emergency parser sees every byte as it arrives; the byte still goes to the RX buffer."""
        if self.halted:
            return False
        command = self.emergency.feed(byte)
        if command == "M108":
            self.wait_for_heatup = False
        elif command == "M112":
            self.kill()
        elif command == "M410":
            self.planner.clear()
        return False

    def poll(self, now: float) -> float | None:
        """Advance to `now`; returns when to be polled next (None: when bytes arrive)."""
        self.now = now
        if self.halted:
            return None
        self._advance_physics(now)
        if self._boot_at is not None:
            if now < self._boot_at:
                return self._boot_at
            self._boot()
        run_until = self._run()  # first: a command may have just set the auto-report interval
        due = [t for t in (run_until, self._autoreport(now)) if t is not None]
        return min(due) if due else None

    # ---- output ---------------------------------------------------------------------------------

    def say(self, *lines: str) -> None:
        """Send lines to the host."""
        if self.wire is not None and not self.halted:
            self.wire.send("".join(f"{line}\n" for line in lines).encode("latin-1", errors="replace"))

    def ok_line(self, line_number: int | None) -> str:
        """`ok`, or with ADVANCED_OK `ok N<n> P<planner free> B<queue free>`."""
        if not self.cfg.advanced_ok:
            return "ok"
        n = f" N{line_number}" if line_number is not None else ""
        free = self.planner.moves_free(self.now)
        return f"ok{n} P{free} B{self.cfg.bufsize - len(self.queue)}"

    def kill(self, reason: str = "") -> None:
        """Marlin's kill(): say so once, then stop everything (a reset is needed)."""
        if reason:
            self.say(f"Error:{reason}")
        self.say("Error:Printer halted. kill() called!")
        self.halted = True
        self.hotend.target = self.bed.target = 0.0
        self.planner.clear()

    # ---- the main loop ----------------------------------------------------------------------------

    def _run(self) -> float | None:
        """Finish or continue the current command, read lines, start the next one."""
        while not self.halted and self._boot_at is None:
            if self._refusing is not None:
                if self.now < self._refusing[0]:
                    return self._refusing[0]  # the whole main loop waits inside gcode_line_error
                self._end_refusal(self._refusing[1])
            if self.current is not None:
                wake = self._resume()
                if wake is not None:
                    return min(wake, self._keepalive())
            self._read_commands()
            if self._refusing is not None:
                continue  # blocked writing the error line: its end is the next wake-up
            if self.halted or self._boot_at is not None or not self.queue:
                break
            self._begin(self.queue[0])
        return None if self.halted else self._boot_at

    def _begin(self, item: Queued) -> None:
        # time_scale 0: what the previous command started (a heater's target) is already done
        self._advance_physics(self.now)
        if item.line_number is not None and self._inject_fault(item.line_number):
            return
        self.busy_next = self.now + self.cfg.busy_interval_s
        if self.cfg.locked and command_code(item.command) not in ("M110", "M511"):
            self.say("echo:Printer locked! (Unlock with M511 or LCD)")  # and nothing is executed
            self._finish(None, executed=False)
            return
        handler: Handler | None = self.handler_for(item.command)
        if handler is None:
            self.stats.unknown_commands += 1
            self.say(f'echo:Unknown command: "{item.command}"')
            self._finish(None)
            return
        self.stats.unnumbered_commands_run += item.line_number is None
        result = handler(item.command)
        if isinstance(result, Generator):
            self.current = result
        else:
            self._finish(result)

    def _resume(self) -> float | None:
        """Run the blocked command on; its wake-up time, or None once it finished."""
        assert self.current is not None
        try:
            return next(self.current)
        except StopIteration as done:
            self.current = None
            self._finish(done.value)
            return None

    def _finish(self, ok_text: str | None, executed: bool = True) -> None:
        """The command is processed: record it, say ok (or the handler's own ok line), free its slot."""
        if self.halted or not self.queue:
            return
        item = self.queue[0]
        if executed:
            self.stats.commands_executed += 1
            self.on_executed(" ".join(item.command.split()))
        self.say(ok_text if ok_text is not None else self.ok_line(item.line_number))
        self.queue.popleft()

    def _keepalive(self) -> float:
        """`echo:busy: processing` every busy_interval_s while one command blocks."""
        if self.now >= self.busy_next:
            self.say("echo:busy: processing")
            self.busy_next = self.now + self.cfg.busy_interval_s
        return self.busy_next

    def _autoreport(self, now: float) -> float | None:
        if self.autoreport_s <= 0:
            return None
        if now >= self.next_autoreport:
            self.say(f" {self.temperature_report()}")
            self.next_autoreport = now + self.autoreport_s
        return self.next_autoreport

    def _advance_physics(self, now: float) -> None:
        dt = 0.0 if self._physics_at is None else now - self._physics_at
        self._physics_at = now
        for heater in (self.hotend, self.bed):
            if self.cfg.time_scale <= 0:
                heater.settle()
            else:
                heater.advance(dt / self.cfg.time_scale)
        self.planner.retire(now)

    def _boot(self) -> None:
        self._boot_at = None
        if self.wire is not None:
            self.wire.rx_clear()  # what arrived while the bootloader ran is lost
        self.say(*boot_banner(self.stored))

    # ---- reading lines ----------------------------------------------------------------------------

    def _read_commands(self) -> None:
        """Read lines while the queue has room (Marlin's get_serial_commands)."""
        wire = self.wire
        # OctoPrint's virtual printer reads the next line only once the last one was answered.
        slots = 1 if self.cfg.virtual_printer else self.cfg.bufsize
        while wire is not None and len(self.queue) < slots and wire.rx_available():
            chunk = wire.rx_read_line()
            ended = chunk[-1:] in (b"\n", b"\r")
            room = MAX_CMD_SIZE - 1 - len(self.line_buf)
            self.line_buf += (chunk[:-1] if ended else chunk)[: max(room, 0)]
            if not ended:
                return
            text = strip_comment(self.line_buf.decode("latin-1"))
            self.line_buf.clear()
            if not text:
                continue
            if self._ignore_next_line:
                self._ignore_next_line = False
                continue
            self.stats.lines_received += 1
            self._take_line(text)
            if self.halted or self._boot_at is not None or self._refusing is not None:
                return

    def _take_line(self, text: str) -> None:
        verdict = self.checker.check(text)
        if not verdict.accepted:
            self._refuse(verdict)
            return
        if verdict.line_number is not None and self._refused_by_fault(verdict.line_number):
            return
        self.queue.append(Queued(verdict.command, verdict.line_number))

    def _refuse(self, verdict: Verdict, with_ok: bool = True) -> None:
        """Marlin's gcode_line_error: the error, the RX buffer flushed (flush_on_error), `Resend:`, `ok`."""
        counter = {
            "line": "line_number_errors",
            "checksum": "checksum_errors",
            "no_checksum": "missing_checksum_errors",
        }.get(verdict.kind)
        if counter:
            setattr(self.stats, counter, getattr(self.stats, counter) + 1)
        virtual = self.cfg.virtual_printer  # `Error: <text>`, `Resend:<n>`, never a flush
        self.say(f"Error:{' ' if virtual else ''}{verdict.error}")
        if self.cfg.flush_on_error and not virtual:
            if self.wire is not None and self.cfg.tx_buffer is not None:
                drain_at = self.wire.tx_free_at(self.cfg.tx_buffer)
                if drain_at > self.now:  # the RX buffer is read empty once the error line is out
                    self._refusing = (drain_at, with_ok)
                    return
            self._end_refusal(with_ok)
            return
        self._request_resend(with_ok)

    def _end_refusal(self, with_ok: bool) -> None:
        """The rest of gcode_line_error: read the RX buffer empty, then `Resend:` and `ok`."""
        self._refusing = None
        if self.wire is not None:
            self.wire.rx_clear()
        self.line_buf.clear()
        self._request_resend(with_ok)

    def _request_resend(self, with_ok: bool) -> None:
        virtual = self.cfg.virtual_printer
        self.stats.resends_requested += 1
        self.say(f"Resend:{'' if virtual else ' '}{self.checker.last_n + 1}")
        if with_ok:
            self.say(self.ok_line(None))

    # ---- injected faults --------------------------------------------------------------------------

    def _fires(self, name: str, at: int | None, n: int) -> bool:
        if at is None or at != n or name in self._fired:
            return False
        self._fired.add(name)
        self.stats.faults_fired.append(f"{name}@{n}")
        return True

    def _refused_by_fault(self, n: int) -> bool:
        """The checksum faults refuse line n as it is read, as the line checks do."""
        f = self.cfg.faults
        for at, action in f.virtual_errors:
            if self._fires(f"virtual_{action}", at, n):
                self._virtual_error(action, n)
                return True
        without_ok = self._fires("resend_without_ok", f.resend_without_ok_at_line, n)
        if not without_ok and not self._fires("checksum_error", f.checksum_error_at_line, n):
            return False
        self.checker.last_n = n - 1
        error = "Checksum mismatch" if self.cfg.virtual_printer else f"checksum mismatch, Last Line: {n - 1}"
        self._refuse(Verdict(False, error=error, kind="checksum"), with_ok=not without_ok)
        return True

    def _virtual_error(self, action: str, n: int) -> None:
        """One of OctoPrint's virtual printer's `simulated_errors` at line n (simulators.marlin.virtual)."""
        self.checker.last_n = n - 1  # it keeps its last line until the line passed these errors
        if action == "missing_lineno":
            self.say(f"Error: No Line Number with checksum, Last Line: {n - 1}")  # no Resend, no ok
            return
        text = "Checksum mismatch" if action == "checksum_mismatch" else "Missing checksum"
        self._refuse(Verdict(False, error=text, kind="checksum"))
        if action == "resend_with_timeout":
            self.checker.last_n = n  # it counts line n as taken (never run) and ignores the next line
            self._ignore_next_line = True

    def _inject_fault(self, n: int) -> bool:
        """Fire a fault due at line n as it comes to run; True if the line must not run.

        At run time rather than when the line is read, so every earlier line has been processed and
        acknowledged whatever the host's bytes arrived together with.
        """
        f = self.cfg.faults
        if f.action_at_line and self._fires("action", f.action_at_line[0], n):
            self.say(f"//{' ' if self.cfg.action_space else ''}action:{f.action_at_line[1]}")
        if self._fires("kill", f.kill_at_line, n):
            self.kill()
        elif self._fires("thermal_runaway", f.thermal_runaway_at_line, n):
            self.kill("Thermal Runaway, system stopped! Heater_ID: 0")
        elif self._fires("silence", f.silence_at_line, n):
            self.halted = True  # hung: no answer, nothing more executed
        elif self._fires("drop_connection", f.drop_connection_at_line, n):
            self.halted = True
            if self.wire is not None:
                self.wire.drop_connection()
        elif self._fires("reset", f.reset_at_line, n):
            self._power_on()
            self._boot_at = self.now + self.cfg.boot_s
        else:
            return False
        return True
