"""The host's side of Marlin's serial protocol, sans-I/O: bytes in, events out, bytes to write.

A job starts with `N0 M110 N0*cs`; job lines follow once Marlin acknowledged it, compact, as
`N<n> <cmd>*<xor>` with n = 1, 2, ... The bytes of unacknowledged lines stay within the RX window
(plus, with ADVANCED_OK, the lines Marlin says sit in its command queue), room for one numbered
M105 kept free. A refused line is answered `Resend: n` and `ok`: after it, nothing numbered goes
until the stale lines were answered (drivers.marlin.recovery), then from n (drivers.marlin.resend),
and one line at a time until the link has been clean for a while (drivers.marlin.caution).
A lost `ok` never stalls a job: after poke_after_s without `ok` or `busy:` the host sends a
numbered M105 within the window; its `ok T:...` acknowledges everything before it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from drivers.events import (
    FAILURE_HALTED,
    FAILURE_NO_ANSWER,
    FAILURE_THERMAL,
    CommandReply,
    Event,
    FirmwareBusy,
    FirmwareMessage,
    FirmwareReady,
    HostActionRequested,
    JobCancelled,
    JobCompleted,
    JobFailed,
    JobState,
    JobStateChanged,
    ResendRequested,
    Temperatures,
)
from drivers.gcode_text import strip_for_wire
from drivers.marlin import answers, faults, wire
from drivers.marlin.caution import Caution
from drivers.marlin.flight import Entry, InFlight, PendingCommand
from drivers.marlin.recovery import Recovery
from drivers.marlin.resend import ResendPolicy
from drivers.marlin.states import ACTIVE_STATES, JobStateError, allowed, next_state
from drivers.marlin.stream import Stream

__all__ = ["DEFAULT_SAFE_STOP", "JobStateError", "MarlinHost"]

# Heaters and fan off, lift, release the motors: what a cancelled print must leave behind.
DEFAULT_SAFE_STOP: tuple[str, ...] = ("M104 S0", "M140 S0", "M107", "G91", "G1 Z5 F600", "G90", "M84")
_M108 = b"M108\n"
_CONFIRM_AFTER_S = 1.0  # a pipelined stream without `ok` this long asks a numbered M105


class MarlinHost:
    """Marlin host protocol (drivers.hostproto.HostProtocol); see the module docstring."""

    @staticmethod
    def wire_text(line: str) -> str:
        """What of one file line goes on the wire: `( )` are not comments to a stock Marlin."""
        return strip_for_wire(line, paren_comments=False)

    def __init__(
        self,
        *,
        rx_window_bytes: int = 127,
        use_advanced_ok: bool = True,
        safe_stop_gcode: Sequence[str] = DEFAULT_SAFE_STOP,
        poke_after_s: float = 10.0,
        no_answer_after_s: float = 60.0,
        temperature_interval_s: float = 2.0,
        max_resends_of_one_line: int = 10,
        quiet_after_error_s: float = 0.25,
        single_line_after_error: int = 500,
    ) -> None:
        """Set the protocol's limits: rx_window_bytes, most unacknowledged bytes (a 128-byte AVR RX
        buffer holds 127); use_advanced_ok, read `ok N<n> P<p> B<b>`; safe_stop_gcode, sent after
        M108 on cancel; poke_after_s, silence before an M105; no_answer_after_s, silence that fails
        the job; temperature_interval_s, M155's; max_resends_of_one_line, requests in a row for one
        line that fail the job; quiet_after_error_s, see drivers.marlin.recovery;
        single_line_after_error, clean lines sent one at a time after a refusal (0: keep
        pipelining), see drivers.marlin.caution."""
        if rx_window_bytes < 8:
            raise ValueError(f"rx_window_bytes={rx_window_bytes}: at least 8 bytes are needed")
        self._window = rx_window_bytes
        self._advanced = use_advanced_ok
        cleaned = (self.wire_text(line) for line in safe_stop_gcode)  # as written: few, and read in logs
        self._safe_stop = tuple(line for line in cleaned if line)
        self._poke_after = poke_after_s
        self._no_answer_after = no_answer_after_s
        self._temp_interval = temperature_interval_s
        if max_resends_of_one_line < 1:
            raise ValueError(f"max_resends_of_one_line={max_resends_of_one_line}: at least 1")
        self._max_repeats = max_resends_of_one_line
        self._recovery = Recovery(quiet_after_error_s)
        self._caution = Caution(single_line_after_error)  # the link's, so it outlives a job
        self._state = JobState.IDLE
        self._events: list[Event] = []
        self._now = 0.0
        self._partial = b""
        self._flight = InFlight()
        self._urgent: deque[tuple[bytes, Entry]] = deque()  # written first, outside the window
        self._queued: deque[tuple[bytes, Entry]] = deque()  # manual commands, M155, polls
        self._max_b = 0
        # why the next `ok` acknowledges nothing ("refused", "garbage"), or "m105": it answers an M105
        self._swallow_ok = ""
        self._ok_before_temps = False  # a bare `ok` came while only an M105 was waiting
        self._seen_n = False  # an ADVANCED_OK `ok N<n>` came: `ok`s without N are unnumbered lines'
        self._last_error = ""
        self._progress_at = 0.0  # last `ok`/`busy:` (or when lines went out onto an idle wire)
        self._life_at = 0.0  # last line of any kind
        self._poked_at: float | None = None
        self._poke_waits = False  # a poke's M105 is unanswered
        self._poll_at: float | None = None  # next M105 temperature poll (firmware without M155)
        self._new_job(())

    # -- HostProtocol ---------------------------------------------------------------------------

    @property
    def job_state(self) -> str:
        """One of drivers.events.JobState."""
        return self._state

    @property
    def window_bytes(self) -> int:
        """Most unacknowledged bytes that may sit in Marlin's RX buffer."""
        return self._window

    @property
    def single_line(self) -> bool:
        """Lines go one at a time: the link corrupted a line not long ago (drivers.marlin.caution)."""
        return self._caution.active

    @property
    def resends(self) -> int:
        """Resend requests answered in this job."""
        return self._resends.count

    def start_job(self, lines: Sequence[str], now: float) -> None:
        """Begin streaming these raw file lines; JobStateError while a job is active."""
        self._now = now
        state = next_state(self._state, "start")
        self._new_job(lines)
        self._flight.drop_numbered_from(0)
        self._s.live = True
        self._set_state(state)

    def receive(self, data: bytes, now: float) -> list[Event]:
        """Take bytes read from the port (any split; a partial line waits for its end)."""
        self._now = now
        *lines, self._partial = (self._partial + data).split(b"\n")
        if len(self._partial) > 4 * wire.MAX_CMD_SIZE:  # noise without a newline: don't grow forever
            lines.append(self._partial)
            self._partial = b""
        for raw in lines:
            line = raw.decode("latin-1").strip()
            if line:
                self._on_line(line, now)
        return self._take_events()

    def data_to_send(self, now: float) -> bytes:
        """Bytes that may be written now without overflowing Marlin's RX buffer."""
        self._now = now
        out: list[bytes] = []
        while self._urgent:
            data, entry = self._urgent.popleft()
            self._put(entry, now)
            out.append(data)
        rx = self._flight.rx_bytes()
        if self._recovery.holding(now, answers.queue_busy(self._flight)):
            return b"".join(out)  # stale lines still arrive: a flush would cut what we send now
        while self._queued and self._fits(rx, len(self._queued[0][0])) and self._may_add():
            data, entry = self._queued.popleft()
            self._put(entry, now)
            rx += entry.size
            out.append(data)
        while True:
            state = self._state
            frame = self._s.candidate(state == JobState.RUNNING, state == JobState.CANCELLING)
            # only an M105 may use the room kept for the poke
            if frame is None or not self._fits(rx, len(frame), reserve=not self._s.is_m105(self._s.next_n)):
                break
            if not self._may_add():
                break
            entry = self._s.transmit(frame)
            self._put(entry, now)
            rx += len(frame)
            out.append(frame)
        return b"".join(out)

    def poll(self, now: float) -> list[Event]:
        """Run the timers: pokes on silence, the no-answer failure, M105 temperature polls."""
        self._now = now
        if len(self._flight):
            if now >= self._life_at + self._no_answer_after:
                self._no_answer()
            elif now >= self._poke_due():
                self._poke(now)
        if self._poll_at is not None and now >= self._poll_at:
            self._poll_at = now + self._temp_interval
            self._ask_m105()
        confirm = self._confirm_due()
        if confirm is not None and now >= confirm:
            self._ask_m105()
        return self._take_events()

    def next_deadline(self) -> float | None:
        """When poll() must run next (now, when events wait to be collected); None without timers."""
        if self._events:
            return self._now
        times = [t for t in (self._poll_at, self._recovery.release_at()) if t is not None]
        if len(self._flight):
            times += [self._life_at + self._no_answer_after, self._poke_due()]
        confirm = self._confirm_due()
        if confirm is not None:
            times.append(confirm)
        return min(times) if times else None

    def pause(self, now: float) -> None:
        """Send no job lines after those on the wire; PAUSED once they are acknowledged (no job: no-op)."""
        self._now = now
        if not allowed(self._state, "pause"):
            return  # the job may have ended a moment ago: a late pause is no error
        self._set_state(next_state(self._state, "pause"))
        self._check_progress()

    def resume(self, now: float) -> None:
        """Carry on streaming after pause() (no paused job: no-op)."""
        self._now = now
        if allowed(self._state, "resume"):
            self._set_state(next_state(self._state, "resume"))

    def cancel(self, now: float, reason: str = "cancelled") -> None:
        """Stop job lines, send M108 (ends a heat wait) and the safe-stop lines; JobCancelled follows.

        No-op without an active job or while already cancelling.
        """
        self._now = now
        if not allowed(self._state, "cancel"):
            return  # no job, or already cancelling
        state = next_state(self._state, "cancel")
        self._cancel_reason = reason
        self._s.stop_job(self._safe_stop)
        self._urgent.append((_M108, Entry(-1, len(_M108), text="M108")))
        self._set_state(state, reason)

    def send_command(self, line: str) -> None:
        """Queue one manual command, sent unnumbered; its answer comes as a CommandReply."""
        command = self.wire_text(line)
        data = wire.manual_line(line, command)
        is_m105 = command.upper().split(" ", 1)[0] == answers.M105
        self._queued.append((data, Entry(-1, len(data), is_m105, PendingCommand(command), command)))

    # -- writing ------------------------------------------------------------------------------

    def _new_job(self, lines: Sequence[str]) -> None:
        self._s = Stream(lines)
        self._resends = ResendPolicy()
        self._cancel_reason = ""
        self._poll_at = None
        self._flight.taken_n = -1
        self._recovery.reset()
        self._poke_waits = False

    def _fits(self, rx: int, size: int, reserve: bool = True) -> bool:
        # Room for a numbered M105 stays free, so the poke on silence never exceeds the window.
        # A line longer than the whole window goes alone onto an empty wire.
        kept = len(str(len(self._s.frames))) + 11 if reserve and self._s.live else 0  # `N<n> M105*<cs>\n`
        return rx + size + kept <= self._window or self._flight.bytes == 0

    def _may_add(self) -> bool:
        # Only a numbered line Marlin may not have read yet can still be refused and flush (an
        # M105's too: noise can make its cut tail `M104`). A poke means a silence: what was on the
        # wire before it was read, its `ok` maybe lost.
        if not self._caution.active:
            return True
        poked = float("-inf") if self._poked_at is None else self._poked_at
        taken = self._flight.taken_n
        return not any(entry.n > taken and entry.sent_at >= poked for entry in self._flight)

    def _put(self, entry: Entry, now: float) -> None:
        if not len(self._flight) and not self._poke_waits:
            # the wait for an answer starts now, not at the last old answer (a poke's own resends
            # are part of the wait that made it poke)
            self._progress_at = self._life_at = now
        entry.sent_at = now
        self._flight.push(entry)
        self._resends.transmitted(entry.n)

    # -- received lines -------------------------------------------------------------------------

    def _on_line(self, line: str, now: float) -> None:
        self._life_at = now
        self._recovery.heard(now)
        kind = wire.classify(line)
        asked = wire.implied_resend(self._last_error) if self._last_error and kind != wire.RESEND else None
        if asked is not None:
            self._on_resend(f"Resend: {asked}")  # Marlin's `Resend:` always follows: noise hit it
        swallow, self._swallow_ok = self._swallow_ok, ""
        if asked is not None and kind != wire.OK:
            self._swallow_ok = swallow  # this is the hit `Resend:` line: the refusal's `ok` follows it
        temps_due, self._ok_before_temps = self._ok_before_temps, False
        if kind == wire.MESSAGE and len(self._flight) and wire.mangled_ok(line):
            # An `ok` lost to noise holds its line's bytes in the window, up to a stall at the poke.
            # One line at a time, or with temperatures (an M105's), it can only be that line's; else
            # a numbered M105 settles it.
            if self._caution.active or wire.mangled_m105_ok(line):
                self._events.append(FirmwareMessage(line))
                kind, line = wire.OK, "ok" + line[2:]
            else:
                self._ask_m105()
        if kind == wire.OK:
            self._resends.ok_came(after_resend=swallow == "refused")
            self._on_ok(line, now, swallow)
        elif kind == wire.TEMPS and temps_due:
            self._on_ok(f"ok {line}", now, "")  # firmware that says `ok` first, then the M105's `T:`
        elif kind == wire.RESEND:
            self._on_resend(line)
        elif kind == wire.LINE_ERROR:
            self._last_error = line  # its Resend: follows
        elif kind == wire.BUSY:
            self._progress_at = now
            self._events.append(FirmwareBusy(line))
        elif kind == wire.TEMPS:
            self._events.append(Temperatures(wire.parse_temperatures(line)))
        elif kind == wire.ACTION:
            self._on_action(line, now)
        elif kind in faults.STOPS_PRINTER or (kind in faults.STOPS_JOB and self._state in ACTIVE_STATES):
            self._on_fatal(kind, line)
        else:
            self._on_message(kind, line)

    def _on_ok(self, line: str, now: float, swallow: str) -> None:
        info = wire.BARE_OK if line == "ok" else wire.parse_ok(line)
        if info.temperatures:
            self._events.append(Temperatures(wire.parse_temperatures(line)))
        advanced = self._advanced and info.buffer_free is not None
        numbered = advanced and info.line_number is not None
        if swallow == "refused" and not info.temperatures and not advanced:
            return  # the `ok` of a refused line acknowledges nothing
        if swallow == "garbage" and not info.temperatures and not numbered:
            return  # the `ok` of a line noise made up acknowledges nothing
        self._progress_at = now
        tail = self._recovery.active and not info.temperatures and not numbered
        if tail and answers.is_tail_ok(self._flight, self._unnumbered_only()):
            self._recovery.tail_ran(now)  # a cut tail ran: its `ok` acknowledges none of our lines
            return
        if info.temperatures or swallow == "m105":
            popped = self._flight.pop_through_m105()
            self._poke_waits = False
        elif numbered and info.line_number is not None:
            self._seen_n = True
            popped = self._ok_numbered(info.line_number)
        else:
            # With ADVANCED_OK (once `ok N<n>` showed up) an `ok` without N answers an unnumbered line.
            entry = self._flight.pop(unnumbered_only=advanced and self._seen_n)
            popped = [entry] if entry is not None else []
            # all sent, only M105s wait: this `ok` is the closing one's, its `T:` line follows
            closing = self._s.barrier_n is not None and not self._s.resending and self._flight.m105_count > 0
            self._ok_before_temps = entry is None and closing
        if advanced and info.buffer_free is not None:
            self._max_b = max(self._max_b, info.buffer_free)
            self._flight.queued = min(len(self._flight), self._max_b - info.buffer_free)
        for i, entry in enumerate(popped):
            self._entry_done(entry, line, own=i == len(popped) - 1)
        self._check_progress()

    def _unnumbered_only(self) -> bool:
        # With ADVANCED_OK (once `ok N<n>` showed up) an `ok` without N answers an unnumbered line.
        return self._advanced and self._seen_n

    def _ok_numbered(self, n: int) -> list[Entry]:
        """ADVANCED_OK named the numbered line just run: every line before it ran too."""
        stream = self._s
        if n <= stream.acked_n or n >= len(stream.frames):
            return []  # already known, or not a line of this job
        self._flight.taken_n = max(self._flight.taken_n, n)
        stream.next_n = max(stream.next_n, n + 1)  # Marlin has them all: none to send again
        self._ack_number(n)
        return []

    def _entry_done(self, entry: Entry, ok_line: str, own: bool) -> None:
        if entry.n >= 0:
            self._ack_number(entry.n)
        pending = entry.command
        if pending is not None:
            if own:
                lines, ok = (*pending.lines, ok_line), not pending.failed
            else:
                lines, ok = (*pending.lines, "(no ok received: the command may have been lost)"), False
            self._events.append(CommandReply(pending.command, lines, ok))

    def _ack_number(self, n: int) -> None:
        """Marlin ran every numbered line up to n (it runs them in number order)."""
        if n <= self._s.acked_n:
            return
        handshake = self._s.acked_n < 0
        self._caution.taken(n - self._s.acked_n)
        self._events.extend(self._s.ack_through(n))
        self._flight.drop_numbered_through(n)  # e.g. M105 pokes whose answers were lost
        self._poke_waits &= self._flight.m105_count > 0
        if handshake:
            self._resends.handshake_done()
        if handshake and self._s.live and self._temp_interval > 0:
            data = f"M155 S{max(1, round(self._temp_interval))}\n".encode("ascii")
            self._queued.append((data, Entry(-1, len(data), text=data.decode("ascii").strip())))

    def _check_progress(self) -> None:
        """End the job, or finish pausing, once every line on the wire is acknowledged."""
        stream = self._s
        if not stream.live or not stream.all_acked:
            return
        ended = stream.barrier_n is not None  # the M105 after the last line was answered
        if ended and self._state in (JobState.RUNNING, JobState.PAUSING) and stream.upcoming is None:
            self._set_state(next_state(self._state, "finish"))
            self._end_stream()
            self._events.append(JobCompleted(stream.acked_lines, stream.acked_bytes, self._resends.count))
        elif self._state == JobState.PAUSING:
            self._set_state(next_state(self._state, "drained"))
        elif ended and self._state == JobState.CANCELLING and not stream.safe_pending:
            self._set_state(next_state(self._state, "stopped"), self._cancel_reason)
            self._end_stream()
            self._events.append(JobCancelled(stream.last_file_line, self._cancel_reason))

    def _on_resend(self, line: str) -> None:
        asked = wire.parse_resend(line)
        self._swallow_ok = "refused"
        reason, self._last_error = self._last_error or line, ""
        if asked is None or not self._s.live:
            self._events.append(FirmwareMessage(line))
            return
        stream = self._s
        refused = wire.refused_line(reason)
        ours = stream.acked_n >= 0 and 0 < asked <= len(stream.frames)
        if ours:
            # Marlin took every line below the one it asks for: they left its RX buffer. Its M105s
            # among them ran at once: one whose answer is missing was lost, a poke may ask again.
            self._flight.taken_n = max(self._flight.taken_n, asked - 1)
            self._flight.drop_m105_below(asked)
            self._poke_waits &= self._flight.m105_count > 0
            if stream.barrier_n is not None and stream.acked_n < stream.barrier_n < asked:
                stream.renew_barrier()
        # Marlin's refusals say `Last Line:` and flush its RX buffer: hold until the stale lines are
        # answered. Firmware that names the refused line keeps its buffer: each request is
        # attributed instead (drivers.marlin.resend).
        flushes = ours and "last line" in reason.lower() and refused is None and not self._resends.names_lines
        if flushes:
            if self._recovery.active:
                self._recovery.answered(self._now)
                return  # a stale line's refusal: this episode's resend is already decided
            self._resends.episode_over()  # every stale line was answered: this request is new
        elif self._recovery.active:
            self._recovery.abort()
        n = self._resends.decide(asked, stream, refused)
        if n is None:
            return  # a stale copy of a request already answered, or not a line of ours
        if self._resends.repeats > self._max_repeats and self._state in ACTIVE_STATES:
            self._lose_flight(line)
            self._fail(*faults.resend_loop(asked, stream.file_line_of(n), self._resends.repeats, reason))
            return
        if flushes:
            self._caution.refused()
            last = stream.frame_tx[n] if n < len(stream.frame_tx) else -1
            self._recovery.begin(stream.tx - last if last >= 0 else len(self._flight), self._now)
        self._flight.drop_numbered_from(n)
        if n > stream.next_n:
            # Marlin took lines whose entries an earlier request removed: their `ok`s will come.
            for k in range(stream.next_n, n):
                self._flight.push(stream.entry_for(k))
        stream.next_n = n
        self._events.append(ResendRequested(asked, reason))

    def _on_message(self, kind: str, line: str) -> None:
        if kind == wire.UNKNOWN_COMMAND:
            self._swallow_ok = answers.whose_unknown(
                self._flight, self._s, wire.unknown_command_text(line), self._unnumbered_only()
            )
            if self._swallow_ok == "garbage":
                self._recovery.answered(self._now)  # the tail of a cut line, answered
                if self._caution.active and not self._recovery.active:
                    # the one line on the wire lost its N: no later line will be refused to say so
                    self._poke(self._now)
            if "M155" in line and self._s.live:
                self._poll_at = self._now  # no auto-report in this firmware: poll M105 instead
        head = self._flight.head()
        if head is not None and head.command is not None:
            head.command.lines.append(line)
            head.command.failed |= kind in (wire.ERROR, wire.UNKNOWN_COMMAND)
        else:
            self._events.append(FirmwareMessage(line))

    def _on_action(self, line: str, now: float) -> None:
        action = wire.host_action(line)
        if action not in ("pause", "resume", "cancel"):
            self._events.append(FirmwareMessage(line))
            return
        self._events.append(HostActionRequested(action))
        if action == "pause":
            self.pause(now)
        elif action == "resume":
            self.resume(now)
        else:
            self.cancel(now, "cancelled on the printer's screen")

    def _on_fatal(self, kind: str, line: str) -> None:
        """A reset, thermal fault or kill (nothing on the wire will be answered), or in a job a lock
        or a `!!` error (lines answered but not run): the job fails."""
        if kind == wire.START:
            self._events.append(FirmwareReady(line))
        self._lose_flight(line)
        if self._state in ACTIVE_STATES:
            self._fail(*faults.job_failure(kind, line))
        elif kind != wire.START:  # no job: the node still learns the firmware stopped, classified here
            fault = {wire.HALTED: FAILURE_HALTED, wire.THERMAL: FAILURE_THERMAL}.get(kind)
            self._events.append(FirmwareMessage(line, fault=fault))

    # -- timers and endings ---------------------------------------------------------------------

    def _ask_m105(self) -> None:
        """Queue a numbered M105 (none waiting): its `ok T:` also confirms every line before it."""
        if self._may_ask_m105():
            self._s.append_m105()

    def _may_ask_m105(self) -> bool:
        stream = self._s
        return not self._flight.m105_count and stream.live and stream.acked_n >= 0 and not stream.resending

    def _confirm_due(self) -> float | None:
        """When to ask a numbered M105 of a pipelined stream that went without `ok` for a while."""
        # An `ok` lost to noise leaves its line's bytes counted in the window; a few of them and the
        # stream stalls until the poke. The M105 fits the room kept for it and settles them all.
        if not len(self._flight) or self._caution.active or not self._may_ask_m105():
            return None
        return self._progress_at + _CONFIRM_AFTER_S

    def _poke_due(self) -> float:
        due = self._progress_at + self._poke_after
        if self._flight.m105_count and self._poked_at is not None:
            # An M105 is unanswered (Marlin stuck in a long command, or its answer lost): ask less often.
            due = max(due, self._poked_at + 3 * self._poke_after)
        return due

    def _poke(self, now: float) -> None:
        """No `ok` for a while: find out whether an `ok` was lost or a refusal went unanswered."""
        self._poked_at = self._progress_at = now
        self._resends.all_read()
        self._recovery.abort()  # this long a silence: nothing stale is still on its way
        if not self._s.live:
            self._urgent.append((b"M105\n", Entry(-1, 5, m105=True, text=answers.M105)))
        else:
            self._poke_waits = answers.poke(self._flight, self._s, self._resends, self._poke_waits)

    def _no_answer(self) -> None:
        silent = self._now - self._life_at
        self._lose_flight(f"no answer for {silent:.0f} s")
        if self._state in ACTIVE_STATES:
            self._fail(FAILURE_NO_ANSWER, f"the printer did not answer for {silent:.0f} s, even to M105")

    def _lose_flight(self, why: str) -> None:
        """Nothing on the wire will be answered (reset, halt, silence): fail the manual commands."""
        self._swallow_ok = ""
        for entry in self._flight.clear():
            if entry.command is not None:
                self._events.append(CommandReply(entry.command.command, (*entry.command.lines, why), False))
        self._urgent.clear()
        self._queued = deque(item for item in self._queued if item[1].command is not None)

    def _fail(self, kind: str, reason: str) -> None:
        self._set_state(next_state(self._state, "fail"), reason)
        self._end_stream()
        self._events.append(JobFailed(kind, reason, self._s.last_file_line))

    def _end_stream(self) -> None:
        self._s.end()
        self._poll_at = None
        self._flight.drop_numbered_from(0)

    def _set_state(self, state: str, reason: str = "") -> None:
        if state != self._state:
            self._state = state
            self._events.append(JobStateChanged(state, reason))

    def _take_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events
