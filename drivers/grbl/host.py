"""GRBL 1.1 host protocol (lasers), sans-I/O: character counting, status polling, hold/reset/M5 cancel.

Bytes in, events out; the driver passes `now` (monotonic seconds) and writes what data_to_send() gives.

Flow control is GRBL's character counting: the bytes (line + "\\n") of lines sent and not yet answered
never exceed the firmware's receive buffer (`rx_buffer_bytes`); every line gets exactly one `ok` or
`error:N`, in order. Real-time bytes (`?` `!` `~` 0x18, overrides 0x80-0xFF) are taken out of the
stream by GRBL's serial interrupt and are sent outside that count. `$` lines (settings, `$H`, `$X`)
are sent alone: GRBL writes EEPROM with interrupts off, so nothing may be in flight around them, and
no `?` goes out while a settings write is in flight. With check_laser_mode, `$$` goes alone after every
banner and job lines wait for its answer (LaserMode). An open lid: door_hold() (0x84), see holds.py.

Cancel, in order (laser: the beam must be off when we report the job cancelled):
  1. `!` feed hold, and stop sending job lines;
  2. wait for a status report showing the hold complete (`Hold:0`, or a state without motion:
     Alarm, Check, Sleep, Door:0/1), at most `hold_timeout_s`; a reset in motion costs position;
  3. 0x18 soft reset: GRBL drops its buffers and, in laser mode, switches the beam off;
  4. after the `Grbl ...` banner, send `M5` and report JobCancelled(last acknowledged file line)
     when it is answered (an `error:N` answer, e.g. alarm lock, is noted in the reason).
  No banner within `reset_timeout_s` -> JobFailed(kind="no_answer").
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from drivers.events import (
    FAILURE_ALARM,
    FAILURE_ERROR,
    FAILURE_NO_ANSWER,
    FAILURE_RESET,
    AlarmRaised,
    CommandReply,
    Event,
    FirmwareMessage,
    FirmwareReady,
    JobCancelled,
    JobCompleted,
    JobFailed,
    JobState,
    JobStateChanged,
    LaserMode,
    LineAcked,
    StatusReport,
)
from drivers.grbl.codes import (
    BANNER,
    E_ALARM_LOCK,
    alarm_advice,
    describe_alarm,
    describe_error,
    parse_status_report,
)
from drivers.grbl.holds import ACTIVE as _ACTIVE
from drivers.grbl.holds import CYCLE_START, FEED_HOLD, SAFETY_DOOR, HoldControls
from drivers.grbl.lines import Sent, clean_line, command_text, is_eeprom_write
from drivers.grbl.settings import SETTINGS_QUERY, laser_mode_event, parse_setting
from drivers.grbl.watch import ProgressWatch

STATUS_QUERY = b"?"
SOFT_RESET = b"\x18"
_REALTIME_CHARS = frozenset("?!~\x18")
# States without motion: a soft reset there keeps the position (Hold:1, Door:2/3 are still moving).
_HELD_STATES = frozenset({"Hold:0", "Alarm", "Check", "Sleep", "Door:0", "Door:1"})
_MAX_PARTIAL = 4096  # a line longer than this from the firmware is noise: hand it on as it is

_JOB, _COMMAND, _INTERNAL, _SETTINGS = "job", "command", "internal", "settings"
_HOLD, _RESET, _M5 = "hold", "reset", "m5"  # cancel phases


class GrblHost(HoldControls):
    """The host's side of GRBL 1.1 (drivers.hostproto.HostProtocol)."""

    wire_text = staticmethod(clean_line)

    def __init__(
        self,
        *,
        rx_buffer_bytes: int = 128,
        status_interval_s: float = 0.2,
        no_answer_after_s: float = 10.0,
        hold_timeout_s: float = 2.0,
        reset_timeout_s: float = 5.0,
        no_progress_s: float = 120.0,
        check_laser_mode: bool = False,
    ) -> None:
        """rx_buffer_bytes: GRBL's serial receive buffer (128 on an Uno; `[OPT:...,rx]` tells);
        status_interval_s: `?` at most this often while a job is active (0.2 s = 5 Hz, GRBL's advice);
        no_answer_after_s: no status report and no ok/error this long during a job -> JobFailed;
        hold_timeout_s: cancel waits this long for the feed hold to complete before the soft reset;
        reset_timeout_s: cancel waits this long for the banner after the soft reset;
        no_progress_s: GRBL answers `?` but neither acks a line nor moves this long -> JobFailed (0: off);
        check_laser_mode: `$$` after every banner, before any job line -> LaserMode (drivers.grbl.settings).
        """
        if rx_buffer_bytes < 2:
            raise ValueError(f"rx_buffer_bytes must be at least 2, got {rx_buffer_bytes}")
        self.rx_buffer_bytes = rx_buffer_bytes
        self.status_interval_s = status_interval_s
        self.no_answer_after_s = no_answer_after_s
        self.hold_timeout_s = hold_timeout_s
        self.reset_timeout_s = reset_timeout_s
        self._watch = ProgressWatch(no_progress_s)
        self._alarm = 0  # the last ALARM:N since GRBL's banner (0: none)
        self._state = JobState.IDLE
        self._events: list[Event] = []
        self._realtime = bytearray()
        self._rx = b""
        self._now = 0.0
        # the wire: lines sent and not answered, oldest first
        self._inflight: deque[Sent] = deque()
        self._inflight_bytes = 0
        self._alone_inflight = False
        self._commands: deque[tuple[str, str]] = deque()  # (as given, cleaned)
        self._reply: list[str] = []
        self._job_id = 0
        self._new_job((), 0.0)
        # timers and holds
        self._next_status_at: float | None = None
        self._last_heard = 0.0
        self._hold_on_wire = self._resume_check = False  # see HoldControls
        self._wco: tuple[float, ...] | None = None
        self._phase = ""
        self._phase_deadline: float | None = None
        self._cancel_reason = ""
        self._cancel_note = ""
        self._internal: deque[str] = deque()
        self._door = False
        self.check_laser_mode = check_laser_mode
        self._settings_wanted = check_laser_mode  # at once too: a board that does not reset never greets
        self._settings: dict[int, str] = {}
        self.laser_mode: LaserMode | None = None  # the last `$$` answer's verdict (None: not yet)

    # -- HostProtocol ---------------------------------------------------------------------------

    @property
    def job_state(self) -> str:
        """One of drivers.events.JobState."""
        return self._state

    def start_job(self, lines: Sequence[str], now: float) -> None:
        """Begin streaming these raw file lines; RuntimeError while another job is active."""
        if self._state in _ACTIVE:
            raise RuntimeError(f"a job is already {self._state}")
        self._new_job(lines, now)
        self._watch.reset(now)
        self._next_status_at = now
        self._set_state(JobState.RUNNING)

    def receive(self, data: bytes, now: float) -> list[Event]:
        """Take bytes read from the port (any split) and return what they mean."""
        self._now = now
        parts = (self._rx + data).split(b"\n")
        self._rx = parts.pop()
        if len(self._rx) > _MAX_PARTIAL:
            parts.append(self._rx)
            self._rx = b""
        for raw in parts:
            line = raw.decode("ascii", "replace").strip()
            if line:
                self._on_line(line, now)
        self._check_complete()
        return self._take_events()

    def data_to_send(self, now: float) -> bytes:
        """Real-time bytes first, then as many lines as the receive-buffer window allows."""
        self._now = now
        self._maybe_query_status(now)
        out = bytearray(self._realtime)
        if FEED_HOLD in self._realtime or SAFETY_DOOR in self._realtime:
            self._hold_on_wire = True
        self._realtime.clear()
        while not self._alone_inflight:
            item = self._next_to_send()
            if item is None or item.size + self._inflight_bytes > self.rx_buffer_bytes:
                break
            out += item.text.encode("ascii") + b"\n"
            self._put_on_wire(item)
        return bytes(out)

    def poll(self, now: float) -> list[Event]:
        """Run timers: status polling, cancel phases, no-answer failure."""
        self._now = now
        self._maybe_query_status(now)
        if self._state in _ACTIVE:
            self._check_timers(now)
        self._check_complete()
        return self._take_events()

    def next_deadline(self) -> float | None:
        """When poll() must run next: at once with events waiting, else the earliest armed timer."""
        if self._events:
            return self._now
        if self._state not in _ACTIVE:
            return None
        times: list[float] = []
        if self._next_status_at is not None and not self._eeprom_busy() and self._phase != _RESET:
            times.append(self._next_status_at)
        if self._phase_deadline is not None:
            times.append(self._phase_deadline)
        if self._phase != _RESET:
            times.append(self._last_heard + self.no_answer_after_s)
        return min(times)

    def cancel(self, now: float, reason: str = "cancelled") -> None:
        """Feed hold, soft reset once held, `M5` after the banner, then JobCancelled (see module doc)."""
        self._now = now
        if self._state not in (JobState.RUNNING, JobState.PAUSING, JobState.PAUSED):
            return
        self._realtime += FEED_HOLD + STATUS_QUERY
        self._hold_on_wire = self._resume_check = False
        self._next_status_at = now + self.status_interval_s
        self._cancel_reason, self._cancel_note = reason, ""
        self._phase, self._phase_deadline = _HOLD, now + self.hold_timeout_s
        self._set_state(JobState.CANCELLING, reason)

    def send_command(self, line: str) -> None:
        """Queue a manual command (sent alone once no job is active; its answer is a CommandReply).

        A single real-time character (`?`, `!`, `~`, `\\x18`, or 0x80-0xFF overrides) is sent at
        once as that byte, without newline and without an answer. ValueError for a blank line or
        one too long for the receive buffer.
        """
        if len(line) == 1 and (line in _REALTIME_CHARS or 0x80 <= ord(line) <= 0xFF):
            self._realtime.append(ord(line))
            return
        self._commands.append((line, command_text(line, self.rx_buffer_bytes)))

    def _new_job(self, lines: Sequence[str], now: float) -> None:
        self._failure: str | None = None  # set while a failed job is being stopped safely
        self._lines: Sequence[str] = lines
        self._cursor = 0
        self._next: tuple[int, str] | None = None  # the next wire line, peeked: (file line, text)
        self._job_id += 1
        self._job_inflight = self._acked_lines = self._acked_bytes = self._last_line_no = 0
        self._now = self._last_heard = now
        self._hold_on_wire = self._resume_check = False

    # -- sending --------------------------------------------------------------------------------

    def _peek_job_line(self) -> tuple[int, str] | None:
        """The next job line that goes on the wire, as (file line number, text); None at the end."""
        while self._next is None and self._cursor < len(self._lines):
            self._cursor += 1
            text = clean_line(self._lines[self._cursor - 1])
            if text:
                self._next = (self._cursor, text)
        return self._next

    def _next_to_send(self) -> Sent | None:
        """The next line allowed on the wire now (window aside), or None."""
        if self._internal:
            if self._inflight:
                return None
            text = self._internal[0]
            return Sent(_INTERNAL, len(text) + 1, text)
        if self._state not in _ACTIVE and self._commands and not self._inflight:
            given, text = self._commands[0]
            return Sent(_COMMAND, len(text) + 1, text, command=given)
        if self._settings_wanted:  # alone, before any job line: a job waits for the laser mode
            return None if self._inflight else Sent(_SETTINGS, len(SETTINGS_QUERY) + 1, SETTINGS_QUERY)
        if self._state == JobState.RUNNING:
            return self._next_job_line()
        return None

    def _next_job_line(self) -> Sent | None:
        nxt = self._peek_job_line()
        if nxt is None:
            return None
        line_no, text = nxt
        size = len(text) + 1
        if size > self.rx_buffer_bytes:
            why = (f"file line {line_no} is {size} bytes with its newline, more than "
                   f"GRBL's {self.rx_buffer_bytes}-byte receive buffer: {text[:40]!r}...")
            self._stop_then_fail(FAILURE_ERROR, why)
            return None
        if text.startswith("$") and self._inflight:
            return None  # a `$` line waits until everything before it is answered
        return Sent(_JOB, size, text, line_no, self._job_id)

    def _put_on_wire(self, item: Sent) -> None:
        if item.kind == _INTERNAL:
            self._internal.popleft()
        elif item.kind == _COMMAND:
            self._commands.popleft()
            self._reply = []
        elif item.kind == _SETTINGS:
            self._settings_wanted, self._settings = False, {}
        else:
            self._next = None
            self._job_inflight += 1
        self._inflight.append(item)
        self._inflight_bytes += item.size
        self._alone_inflight = item.kind != _JOB or item.text.startswith("$")

    def _eeprom_busy(self) -> bool:
        return self._alone_inflight and is_eeprom_write(self._inflight[0].text)

    def _maybe_query_status(self, now: float) -> None:
        if (
            self._state in _ACTIVE
            and self._phase != _RESET
            and self._next_status_at is not None
            and now >= self._next_status_at
            and not self._eeprom_busy()
        ):
            if STATUS_QUERY not in self._realtime:
                self._realtime += STATUS_QUERY
            self._next_status_at = now + self.status_interval_s

    # -- receiving ------------------------------------------------------------------------------

    def _on_line(self, line: str, now: float) -> None:
        if line == "ok" or line.startswith("error:"):
            self._last_heard = now
            self._on_answer(line)
        elif line.startswith("<") and line.endswith(">"):
            self._on_status(line, now)
        elif line.startswith("ALARM:"):
            self._on_alarm(line)
        elif BANNER.match(line):
            self._on_banner(line, now)
        elif self._inflight and self._inflight[0].kind == _SETTINGS and (setting := parse_setting(line)):
            self._settings[setting[0]] = setting[1]  # our own `$$`: read, not logged line by line
        else:
            self._events.append(FirmwareMessage(line))
            self._add_to_reply(line)

    def _add_to_reply(self, line: str) -> None:
        # Commands go alone, so whatever arrives while one is in flight answers it.
        if self._inflight and self._inflight[0].kind == _COMMAND:
            self._reply.append(line)

    def _on_answer(self, line: str) -> None:
        if not self._inflight:
            self._events.append(FirmwareMessage(line))  # an answer to nothing we sent
            return
        sent = self._inflight.popleft()
        self._inflight_bytes -= sent.size
        self._alone_inflight = False
        ok = line == "ok"
        if sent.kind == _COMMAND:
            self._events.append(CommandReply(sent.command, (*self._reply, line), ok))
            self._reply = []
        elif sent.kind == _INTERNAL:
            self._on_internal_answer(line, ok)
        elif sent.kind == _SETTINGS:
            self.laser_mode = laser_mode_event(self._settings, line)
            self._events.append(self.laser_mode)
            if not self.laser_mode.enabled and self._state in _ACTIVE:  # its lines waited: none went out
                self._fail(FAILURE_ERROR, f"GRBL laser mode is off ({self.laser_mode.setting}): a feed hold "
                           "would leave the beam on; a technician sets $32=1 before jobs run")
        elif sent.job != self._job_id:
            if not ok:
                self._events.append(FirmwareMessage(f"{line} for a line of an ended job: {sent.text}"))
        else:
            self._on_job_answer(sent, line, ok)

    def _on_job_answer(self, sent: Sent, line: str, ok: bool) -> None:
        self._job_inflight -= 1
        if ok:
            self._watch.progressed(self._now)
            self._acked_lines += 1
            self._acked_bytes += sent.size
            self._last_line_no = sent.line_no
            if self._state in _ACTIVE:
                self._events.append(LineAcked(sent.line_no, self._acked_lines, self._acked_bytes))
            return
        code, meaning = describe_error(line)
        reason = f"{line} ({meaning}) on file line {sent.line_no}: {sent.text}"
        if code == E_ALARM_LOCK and self._state in (JobState.RUNNING, JobState.PAUSING):
            # the job started (or went on) in Alarm: nothing moves, the alarm is what to fix
            self._fail(FAILURE_ALARM, f"GRBL is in Alarm and refused {reason}; {alarm_advice(self._alarm)}")
        elif self._state == JobState.CANCELLING:
            self._events.append(FirmwareMessage(reason))
        elif self._state in _ACTIVE:
            self._stop_then_fail(FAILURE_ERROR, reason)

    def _on_internal_answer(self, line: str, ok: bool) -> None:
        if not ok:
            _, meaning = describe_error(line)
            self._cancel_note = f"; M5 answered {line} ({meaning})"
        if self._state == JobState.CANCELLING and self._phase == _M5 and not self._internal:
            reason = self._cancel_reason + self._cancel_note
            if self._failure is not None:
                self._fail(self._failure, reason)
            else:
                self._end(JobState.CANCELLED, JobCancelled(self._last_line_no, reason), reason)

    def _on_status(self, line: str, now: float) -> None:
        try:
            report = parse_status_report(line, self._wco)
        except ValueError:
            self._events.append(FirmwareMessage(line))
            return
        self._last_heard = now
        if "WCO" in report.fields:
            self._wco = tuple(float(v) for v in report.fields["WCO"].split(","))
        self._events.append(report)
        self._watch.saw(report.state, report.machine_pos or report.work_pos, now)
        self._after_status(report, now)

    def _after_status(self, report: StatusReport, now: float) -> None:
        state = report.state
        if self._resume_check:
            if self.resume_ignored(state):
                self._realtime += CYCLE_START
            else:
                self._resume_check = False
        if not self._hold_on_wire:
            return
        if self._state == JobState.PAUSING and self._hold_complete(state):
            self._set_state(JobState.PAUSED)
        elif self._phase == _HOLD and state in _HELD_STATES:
            self._soft_reset(now)

    def _on_alarm(self, line: str) -> None:
        code, meaning = describe_alarm(line)
        self._alarm = code
        self._events.append(AlarmRaised(code, meaning))
        self._add_to_reply(line)
        if self._state == JobState.CANCELLING:
            if self._phase == _HOLD:
                self._soft_reset(self._now)  # an alarm stops all motion
        elif self._state in _ACTIVE:
            self._fail(FAILURE_ALARM, f"{line} ({meaning}); {alarm_advice(code)}")

    def _on_banner(self, line: str, now: float) -> None:
        """GRBL (re)started: its receive buffer is empty, so nothing in flight will be answered."""
        self._events.append(FirmwareReady(line))
        self._alarm = 0
        self._settings_wanted, self._door, self.laser_mode = self.check_laser_mode, False, None
        lost_command = next((s for s in self._inflight if s.kind == _COMMAND), None)
        if lost_command is not None:
            self._events.append(CommandReply(lost_command.command, (*self._reply, line), False))
        lost_internal = [s.text for s in self._inflight if s.kind == _INTERNAL]
        self._internal.extendleft(reversed(lost_internal))
        self._inflight.clear()
        self._inflight_bytes = self._job_inflight = 0
        self._alone_inflight = False
        self._reply = []
        self._wco = None
        if self._state == JobState.CANCELLING:
            self._last_heard = now
            self._realtime.clear()  # a late `!` would hold the fresh GRBL, a late 0x18 reset it again
            if self._phase != _M5:
                self._phase, self._phase_deadline = _M5, None
                self._internal.append("M5")
        elif self._state in _ACTIVE:
            self._fail(FAILURE_RESET, f"GRBL restarted during the job ({line}); its buffers were lost")

    # -- timers and state -----------------------------------------------------------------------

    def _check_timers(self, now: float) -> None:
        if self._phase == _HOLD and self._phase_deadline is not None and now >= self._phase_deadline:
            self._soft_reset(now)  # hold not confirmed in time: reset anyway, the beam must go off
        elif self._phase == _RESET and self._phase_deadline is not None and now >= self._phase_deadline:
            self._fail(FAILURE_NO_ANSWER, f"no GRBL banner within {self.reset_timeout_s:g} s after the "
                       f"soft reset while cancelling ({self._cancel_reason}); beam state unknown")
        elif self._phase != _RESET and now - self._last_heard >= self.no_answer_after_s:
            advice = f"; {alarm_advice(self._alarm)}" if self._alarm else ""  # a hard limit: reset needed
            self._fail(FAILURE_NO_ANSWER, f"no status report and no ok from GRBL for "
                       f"{now - self._last_heard:.1f} s (limit {self.no_answer_after_s:g} s){advice}")
        elif self._state == JobState.RUNNING and self._job_inflight and (stuck := self._watch.stuck_for(now)):
            self._stop_then_fail(FAILURE_NO_ANSWER, f"GRBL answers but made no progress for {stuck:.0f} s "
                                 f"(limit {self._watch.limit_s:g} s): no line acknowledged, no move")

    def _soft_reset(self, now: float) -> None:
        self._realtime = bytearray(self._realtime.replace(STATUS_QUERY, b"") + SOFT_RESET)
        self._phase, self._phase_deadline = _RESET, now + self.reset_timeout_s

    def _check_complete(self) -> None:
        if self._state == JobState.RUNNING and not self._job_inflight and self._peek_job_line() is None:
            self._end(JobState.COMPLETED, JobCompleted(self._acked_lines, self._acked_bytes, 0))

    def _stop_then_fail(self, kind: str, reason: str) -> None:
        """End a job that went wrong as a cancel does (hold, reset, M5), then report it failed.

        GRBL refuses only the bad line: the moves already in its buffer would still run with the
        beam on, so the machine is stopped before the failure is reported.
        """
        self.cancel(self._now, reason)
        self._failure = kind

    def _fail(self, kind: str, reason: str) -> None:
        self._end(JobState.FAILED, JobFailed(kind, reason, self._last_line_no), reason)

    def _end(self, state: str, event: Event, reason: str = "") -> None:
        self._set_state(state, reason)
        self._events.append(event)
        self._next_status_at = self._phase_deadline = None
        self._phase = ""
        self._resume_check = False

    def _set_state(self, state: str, reason: str = "") -> None:
        self._state = state
        self._events.append(JobStateChanged(state, reason))

    def _take_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events
