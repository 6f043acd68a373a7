"""Drive one firmware protocol (drivers.hostproto.HostProtocol) over one serial link, in its own thread.

The thread waits with `selectors` on the port and on a wake pipe until the protocol's next deadline,
so a reply is answered with the next line at once and commands from other threads (start, pause,
cancel, a console line) take effect at once; there is no polling sleep. Everything the protocol
reports goes to `on_event`, plus `Progress` (rate-limited) and one final `StreamEnded` per job.
`on_event` runs on the streamer's thread: it must be quick and must not block.

A job's lines may be a FileSource (the node's job file, read from disk block by block as the protocol
asks for lines): it is neither copied nor counted here, and one that changed on disk since its
preflight fails the job (kind `file_changed`) after the protocol's safe stop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import selectors
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from drivers.events import FAILURE_PORT_LOST, CommandReply, FirmwareReady, JobStatus, StatusReport
from drivers.gcode_text import strip_for_wire
from drivers.hostproto import HostProtocol
from drivers.job_tracker import CANCELLED, COMPLETED, FAILED, JobTracker, Progress, StreamEnded
from drivers.serial_link import PortLost, SerialLink

__all__ = ["CANCELLED", "COMPLETED", "FAILED", "FileSource", "JobEnded", "JobTracker", "LinkLost", "Progress",
           "StreamEnded", "Streamer", "count_job_lines"]  # fmt: skip
# StreamEnded.status is how the job ended on the wire (the one vocabulary: drivers.events.JobStatus).
KIND_FILE_CHANGED = "file_changed"  # the job's file changed on disk since its preflight
KIND_HOST_CLOSED = "host_closed"  # close() while a job ran: the machine was not made safe by us
KIND_INTERNAL = "internal"  # the protocol raised; the job cannot go on
KIND_REJECTED = "rejected"  # the protocol refused start_job (e.g. a job of its own still active)
_NO_FD_POLL_S = 0.002
_log = logging.getLogger(__name__)  # ports without an fd (some pyserial URLs) can only be polled


# The old name, kept only until fabnode.cli.stream, fabnode.cli.calibrate_port and
# tests/integration/test_stream_helpers.py import StreamEnded (fabnode.machine's JobEnded is the event).
JobEnded = StreamEnded


@runtime_checkable
class FileSource(Protocol):
    """Job lines read from disk as they stream (fabnode.node.job_file.JobFile), never held whole.

    `commands` was counted by its preflight (the streamer does not read the file to count it);
    `problem` is set once its lines stopped early (the file changed on disk): the job then fails.
    """

    @property
    def commands(self) -> int: ...

    @property
    def problem(self) -> str | None: ...

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> str: ...


@dataclass(frozen=True, slots=True)
class LinkLost:
    """The serial port vanished; the streamer stops driving it (reopen and build a new Streamer)."""

    port: str
    reason: str


@dataclass(frozen=True, slots=True)
class _StartJob:
    lines: Sequence[str]
    name: str
    total: int


def _marlin_text(line: str) -> str:
    return strip_for_wire(line, paren_comments=False)


def count_job_lines(lines: Sequence[str], wire_text: Callable[[str], str] = _marlin_text) -> int:
    """How many of the file's lines the protocol will send (comments and blanks never go)."""
    return sum(1 for line in lines if wire_text(line))


class Streamer:
    """Runs one HostProtocol over one SerialLink in a thread of its own; every method is thread-safe."""

    def __init__(
        self,
        link: SerialLink,
        protocol: HostProtocol,
        on_event: Callable[[object], None],
        clock: Callable[[], float] = time.monotonic,
        *,
        progress_interval_s: float = 0.25,
    ) -> None:
        """Open the link if needed (PortLost if absent) and start the thread."""
        if not link.is_open:
            link.open()
        self._link = link
        self._protocol = protocol
        self._on_event = on_event
        self._clock = clock
        self._interval = progress_interval_s
        self._commands: queue.SimpleQueue[tuple[str, object]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._port_fd = link.fileno()
        self._port_mask = 0
        self._outbuf = b""
        self._job: JobTracker | None = None
        self._file: FileSource | None = None  # the running job's file, read from disk as it is streamed
        self._job_lock = threading.Lock()
        self._job_active = False
        self._lost: LinkLost | None = None
        self._ready = threading.Event()
        self._closing = False
        self._closed = False
        self._dead = ""  # why the thread stopped on an error
        self._set_port_mask(selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._run, name=f"streamer {link.port}", daemon=True)
        self._thread.start()

    # -- the public, thread-safe side -----------------------------------------------------------

    def start_job(self, lines: Sequence[str], name: str = "", total_lines: int | None = None) -> None:
        """Stream these raw file lines (a FileSource is read from disk as it goes); RuntimeError when a job
        is already running."""
        if total_lines is None and isinstance(lines, FileSource):
            total_lines = lines.commands  # counted by its preflight: the file is not read again here
        elif total_lines is None:
            total_lines = count_job_lines(lines, self._protocol.wire_text)
        total = total_lines
        with self._job_lock:  # posted under the lock, so a dying thread finds it and ends it
            if self._dead:
                raise RuntimeError(self._dead)
            if self._job_active:
                raise RuntimeError("a job is already running on this streamer")
            self._job_active = True
            kept = lines if isinstance(lines, FileSource) else list(lines)  # a file stays on disk
            self._post("start", _StartJob(kept, name, total))

    def pause(self) -> None:
        """Stop sending job lines (the protocol decides how the firmware is held)."""
        self._post("pause", None)

    def door_hold(self) -> None:
        """Hold for an open lid or door: the firmware's safety-door hold where it has one (GRBL's turns
        the beam off whatever its laser mode), else pause()."""
        self._post("door", None)

    def resume(self) -> None:
        """Carry on after pause() or door_hold()."""
        self._post("resume", None)

    def cancel(self, reason: str = "cancelled") -> None:
        """Stop the job and make the machine safe; StreamEnded(cancelled) follows."""
        self._post("cancel", reason)

    def send_command(self, line: str) -> None:
        """Send one manual command; its answer arrives as a CommandReply event."""
        self._post("command", line)

    def send_realtime(self, data: bytes) -> None:
        """Write bytes straight to the port, outside any flow control (GRBL `?`, `!`, `~`, 0x18)."""
        self._post("realtime", bytes(data))

    @property
    def job_active(self) -> bool:
        """True from start_job() until its StreamEnded was reported."""
        with self._job_lock:
            return self._job_active

    @property
    def lost(self) -> LinkLost | None:
        """Why the port was lost, or None while it works."""
        return self._lost

    def wait_ready(self, timeout_s: float) -> bool:
        """Wait until the firmware greeted or answered (a command, a GRBL `?`); False after timeout_s."""
        return self._ready.wait(timeout_s)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the thread (a running job ends as failed, kind host_closed) and close the port."""
        if self._closed:
            return
        self._post("close", None)
        self._thread.join(timeout_s)
        self._closed = True
        self._selector.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        self._link.close()

    def __enter__(self) -> Streamer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _post(self, what: str, arg: object) -> None:
        if self._closed:
            return  # the wake pipe's fds are closed and may already belong to someone else
        self._commands.put((what, arg))
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"\0")  # a full pipe already wakes the loop

    # -- the streamer's thread ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._closing:
                self._step()
        except Exception as exc:  # a bug must not leave a job hanging: end it and say why
            with self._job_lock:
                self._dead = f"streamer stopped: {exc!r}"
            self._end_job(FAILED, KIND_INTERNAL, self._dead)
            self._end_queued_jobs(self._dead)
            _log.exception("the streamer on %s stopped", self._link.port)
        finally:
            if self._closing:
                self._end_job(FAILED, KIND_HOST_CLOSED, "the host closed the port during the job")

    def _end_queued_jobs(self, reason: str) -> None:
        """Jobs posted but never begun still get their StreamEnded."""
        while True:
            try:
                _, arg = self._commands.get_nowait()
            except queue.Empty:
                return
            if isinstance(arg, _StartJob):
                self._job = JobTracker(arg.name, arg.total, self._clock(), self._interval)
                self._end_job(FAILED, KIND_INTERNAL, reason)

    def _step(self) -> None:
        """One turn: commands, timers, writes, then wait for the port, the wake pipe or a deadline."""
        now = self._clock()
        self._drain_commands(now)
        if self._closing:
            return
        if self._lost is None:
            deadline = self._protocol.next_deadline()
            if deadline is not None and now >= deadline:
                self._deliver(self._protocol.poll(now), now)
            self._flush(now)
        self._emit_due_progress(now)
        for key, mask in self._selector.select(self._timeout(now)):
            if key.data == "wake":
                self._drain_wake()
            elif self._lost is None:
                if mask & selectors.EVENT_WRITE:
                    self._flush(self._clock())
                if mask & selectors.EVENT_READ:
                    self._read(self._clock())
        if self._port_fd is None and self._lost is None:
            self._read(self._clock())

    def _timeout(self, now: float) -> float | None:
        """How long the loop may sleep: until the protocol's or the progress deadline, whichever first."""
        times = [t for t in (self._next_protocol_deadline(), self._next_progress_at()) if t is not None]
        timeout = max(min(times) - now, 0.0) if times else None
        if self._port_fd is None and self._lost is None:
            timeout = _NO_FD_POLL_S if timeout is None else min(timeout, _NO_FD_POLL_S)
        return timeout

    def _next_protocol_deadline(self) -> float | None:
        return None if self._lost is not None else self._protocol.next_deadline()

    def _next_progress_at(self) -> float | None:
        return self._job.next_progress_at() if self._job is not None else None

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 4096):
                pass

    def _drain_commands(self, now: float) -> None:
        while True:
            try:
                what, arg = self._commands.get_nowait()
            except queue.Empty:
                return
            self._apply(what, arg, now)

    def _apply(self, what: str, arg: object, now: float) -> None:
        """Carry out one command posted by another thread."""
        if what == "close":
            self._closing = True
        elif isinstance(arg, _StartJob):
            self._start(arg.lines, arg.name, arg.total, now)
        elif self._lost is not None:
            return  # nothing can reach the firmware any more
        elif what == "pause":
            self._protocol.pause(now)
        elif what == "door":
            door_hold = getattr(self._protocol, "door_hold", None)  # GRBL's safety door; Marlin has none
            (door_hold or self._protocol.pause)(now)
        elif what == "resume":
            self._protocol.resume(now)
        elif what == "cancel":
            self._protocol.cancel(now, str(arg))
        elif what == "command":
            self._command(str(arg))
        elif what == "realtime" and isinstance(arg, bytes):
            self._outbuf += arg
            self._write_out()

    def _command(self, line: str) -> None:
        try:
            self._protocol.send_command(line)
        except ValueError as exc:  # blank after comments, too long: the answer says why, nothing is sent
            self._emit(CommandReply(line, (f"not sent: {exc}",), False))

    def _start(self, lines: Sequence[str], name: str, total: int, now: float) -> None:
        self._job = JobTracker(name, total, now, self._interval)
        self._file = lines if isinstance(lines, FileSource) else None
        if self._lost is not None:
            self._end_job(FAILED, FAILURE_PORT_LOST, f"{self._lost.port}: {self._lost.reason}")
            return
        try:
            self._protocol.start_job(lines, now)
        except (ValueError, RuntimeError) as exc:  # the protocol's state machine refused: say why
            self._end_job(FAILED, KIND_REJECTED, f"the protocol refused to start the job: {exc}")

    def _flush(self, now: float) -> None:
        """Write what the protocol wants sent; ask it only once earlier bytes have left."""
        if not self._outbuf:
            self._outbuf = self._protocol.data_to_send(now)
            self._check_file(now)
        if self._outbuf:
            self._write_out()

    def _check_file(self, now: float) -> None:
        """A job file that changed on disk ends its lines early: stop the job safely, and fail it."""
        job, file = self._job, self._file
        if file is not None and file.problem is not None and job is not None and job.ended is None:
            self._file = None
            job.failure = (KIND_FILE_CHANGED, file.problem)
            self._protocol.cancel(now, file.problem)

    def _write_out(self) -> None:
        try:
            written = self._link.write(self._outbuf)
        except PortLost as exc:
            self._port_lost(exc)
            return
        if self._job is not None and self._job.ended is None:
            self._job.bytes_sent += written
        self._outbuf = self._outbuf[written:]
        # Wait for the port to take more only while something is left over.
        self._set_port_mask(selectors.EVENT_READ | (selectors.EVENT_WRITE if self._outbuf else 0))

    def _read(self, now: float) -> None:
        try:
            data = self._link.read_available()
        except PortLost as exc:
            self._port_lost(exc)
            return
        if data:
            self._deliver(self._protocol.receive(data, now), now)
            self._flush(now)

    def _deliver(self, events: Sequence[object], now: float) -> None:
        """Pass protocol events on, with the Progress and StreamEnded they cause."""
        for event in events:
            if isinstance(event, FirmwareReady | CommandReply | StatusReport):
                self._ready.set()
            self._emit(event)
            if self._job is not None and self._job.ended is None:
                for derived in self._job.on_event(event, now):
                    self._emit_job_event(derived)

    def _emit_due_progress(self, now: float) -> None:
        if self._job is not None and self._job.ended is None:
            due = self._job.due_progress(now)
            if due is not None:
                self._emit(due)

    def _emit_job_event(self, event: object) -> None:
        if isinstance(event, StreamEnded):
            with self._job_lock:
                self._job_active = False
        self._emit(event)

    def _end_job(self, status: JobStatus, kind: str, reason: str) -> None:
        if self._job is not None and self._job.ended is None:
            for event in self._job.end(status, kind, reason, self._clock()):
                self._emit_job_event(event)
        with self._job_lock:
            self._job_active = False

    def _port_lost(self, exc: PortLost) -> None:
        self._lost = LinkLost(exc.port, exc.reason)
        self._outbuf = b""
        self._set_port_mask(0)
        self._emit(self._lost)
        self._end_job(FAILED, FAILURE_PORT_LOST, f"serial port {exc.port} lost: {exc.reason}")

    def _set_port_mask(self, mask: int) -> None:
        if self._port_fd is None or mask == self._port_mask:
            return
        if self._port_mask and mask:
            self._selector.modify(self._port_fd, mask, "port")
        elif mask:
            self._selector.register(self._port_fd, mask, "port")
        else:
            self._selector.unregister(self._port_fd)
        self._port_mask = mask

    def _emit(self, event: object) -> None:
        try:
            self._on_event(event)
        except Exception:  # a listener's bug must not stop the job
            _log.exception("on_event failed for %r", event)
