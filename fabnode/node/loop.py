"""The node daemon: one event queue, ONE controller thread that owns the machine's state, and adapters.

Adapters (badge reader, GPIO inputs, the streamer, the control socket, signals) only post items onto
the queue; the controller thread (the thread that calls `Daemon.run()`) stamps each with its monotonic
clock, hands it to `fabnode.machine.controller.Controller` and carries out the returned actions in order
(relay, LEDs, buzzer, streamer, usage log, replies). Time-outs are `Tick`s posted when
`controller.next_deadline()` passes; the same loop writes job checkpoints, retries the port and the
records a full disk held back, and pets systemd's watchdog, so a stuck loop is restarted.

Two clocks: `clock` (monotonic) measures every duration (session, job running and paused, idle
timeout, cooldown, reconnect delays); `wall` only stamps records. A wall clock that jumps (NTP after a
boot without network, a technician setting the date) moves timestamps, never a timer.

Start-up: relay off, `recover()` (sessions and jobs a crash left open become `interrupted`), inputs
read, reader and firmware port opened (a port absent now is retried), control socket served, READY=1.
Faults while running (fabnode.node.health, fabnode.records.storage_guard, docs/faults.md): a lost port fails
the job (`port_lost`) and is reopened by the same path; a lost reader is logged and comes back by
itself; a full disk refuses new sessions and keeps records for later. SIGHUP re-reads the config
(fabnode.node.reload). Stop (SIGTERM, `stop()`): a running job is cancelled the safe way (printer:
heaters off, lift) and given `STOP_JOB_WAIT_S` to end, recorded `cancelled` ("fabnode stopped") with
what the firmware acknowledged; the session is closed and the relay switched off before the process
leaves.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from drivers import events as fw
from drivers.grbl.settings import laser_mode_written
from drivers.serial_link import PortLost, SerialLink
from drivers.streamer import LinkLost, Progress, StreamEnded, Streamer
from fabnode.config.settings import Config
from fabnode.machine.controller import Controller
from fabnode.machine.events import Event, FirmwareFault, JobEnded, JobPaused, StorageChanged, Tick
from fabnode.machine.profile import GRBL, HEATERS_OFF, MARLIN
from fabnode.node import lifecycle, reports
from fabnode.node.actions import ActionRunner
from fabnode.node.bookkeeping import Bookkeeper
from fabnode.node.calibrate import CalibrateDesk
from fabnode.node.control import ControlServer
from fabnode.node.directory_sync import DirectorySync
from fabnode.node.health import PartsHealth
from fabnode.node.inbox import Inbox
from fabnode.node.jobs import JobBook
from fabnode.node.logsafe import shown
from fabnode.node.ports import JsonObject, Outcome, Publisher
from fabnode.node.reload import Loader, Reloader, controller_settings
from fabnode.node.requests import RequestHandler
from fabnode.node.sdnotify import Notifier
from fabnode.node.status import StatusView
from fabnode.node.taps import TapDesk
from fabnode.node.technician import TechnicianDesk
from fabnode.node.web_desk import WebDesk
from fabnode.node.wiring import SIM_PORT, Parts, make_protocol
from fabnode.paths import control_socket_path, ensure_state_dir, secret_file_path, usage_db_path
from fabnode.records import members as access
from fabnode.records.storage_guard import StorageGuard, probe_write
from fabnode.records.usage import UsageLog

log = logging.getLogger("fabnode.daemon")
STOP_JOB_WAIT_S = 5.0
GREETING_WAIT_S = 3.0
LASER_MODE_UNREAD = "not read yet: GRBL has not answered $$ since its port opened"
SETTLE_WAIT_S = 10.0  # how long a job or calibration request waits for a board reset by its port opening
MAX_WAIT_S = 1.0
SWITCH_INTERVAL_S = 0.001
TELEMETRY_RESTART_EVERY_S = 60.0
T = TypeVar("T")
__all__ = ["Daemon", "controller_settings"]  # controller_settings lives in fabnode.node.reload


@dataclass(frozen=True, slots=True)
class _Item:
    """One thing on the queue: an event to build at dispatch time, a firmware report, or a call."""

    kind: str  # "event", "badge", "reader", "firmware", "call", "reload", "stop"
    payload: object = None


class Daemon:
    """Builds the node around `parts` and runs its controller loop in the thread that calls run()."""

    def __init__(
        self,
        config: Config,
        parts: Parts,
        state_dir: Path,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
        notifier: Notifier | None = None,
        reload_config: Loader | None = None,
    ) -> None:
        self.config = config
        self.parts = parts
        self.state_dir = ensure_state_dir(state_dir)
        self.clock = clock
        self.wall = wall
        self.notifier = notifier or Notifier()
        self.log = UsageLog.open(usage_db_path(self.state_dir))
        self.secret = access.load_secret(secret_file_path(self.state_dir))
        self.storage = StorageGuard(self.state_dir, config.node.min_free_mb, lambda: probe_write(self.log),
                                    on_trouble=self._storage_trouble)  # fmt: skip
        self.controller = Controller(controller_settings(config))
        self.jobs = JobBook(self.log, config.node.machine, config.machine, config.session.checkpoint_every_s,
                            wall, self.storage)  # fmt: skip
        self.inbox = Inbox(config.inbox).ensure() if config.inbox is not None else None
        self.streamer: Streamer | None = None
        self.telemetry: Publisher | None = None  # when a broker is configured
        self.temperatures: dict[str, dict[str, float | None]] = {}
        self.started_at = clock()
        self.books = Bookkeeper(self.log, self.storage, self.jobs, lambda: self.config.node.machine, wall)
        self.health = PartsHealth(self, self.record_fault)
        self.technician = TechnicianDesk(self)  # `calibrate relay|leds|inputs|badge`
        self.actions = ActionRunner(self)
        self.calibration = CalibrateDesk(self)  # `calibrate_command` requests and their replies
        self.reloader = Reloader(self, reload_config)
        t = self.technician
        desks = {"relay": t.relay_request, "leds": t.leds_request, "inputs": t.inputs_request,
                 "badge-capture": t.capture_request,
                 "calibrate_command": self.calibration.handle}  # fmt: skip
        self.directory = DirectorySync(lambda: self.config, usage_db_path(self.state_dir), self.secret, wall)
        self.web = WebDesk(self)  # the HTTP server's desk and the upload queue (print release)
        status = StatusView(self, self.actions, self.technician, self.health, self.reloader,
                            self.directory.status, self.web.snapshot)  # fmt: skip
        self.requests = RequestHandler(self, desks, status)
        self.taps = TapDesk(self, self.requests.start_from_inbox, self.directory.only_technicians)
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()  # put() is safe in signal handlers
        self._acked = (0, 0)  # (lines acked, last file line): written by the streamer thread only
        self._stopping = False
        self._reconnect_at: float | None = None
        self._telemetry_retry_at = 0.0
        self._heaters_off_on_greeting = False
        self._hello_at: float | None = None  # a reopened board that has not greeted is spoken to then
        # Set once the board greeted (or GREETING_WAIT_S passed): a board resets when its port opens and
        # a job sent before its `start` is lost in that reset, so job requests wait for this (any thread).
        self.firmware_settled = threading.Event()
        # Why GRBL's laser mode ($32) is not known to be on; None: on (or a printer).
        self.laser_mode_off: str | None = None
        self._storage_told: str | None = None  # the storage problem the controller last heard of
        self._watchdog_at = 0.0
        self.server: ControlServer | None = None
        self.ready = threading.Event()

    # --- what adapters call (any thread) -----------------------------------------------------------

    def post(self, make: Callable[[float], Event]) -> None:
        """Post a controller event, built with the controller thread's clock when it is taken."""
        self._queue.put(_Item("event", make))

    def wait_settled(self) -> bool:
        """Wait (on a socket thread, never the controller's) until the board greeted after its port opened."""
        return self.firmware_settled.wait(SETTLE_WAIT_S)

    def call(self, fn: Callable[[float], T], timeout: float = 10.0) -> T:
        """Run fn(now) in the controller thread and return its result (for the control socket).
        TimeoutError if the controller did not take it within `timeout`: it is withdrawn then, never run
        later (a client told "no answer" must not find its print started a minute after)."""
        future: Future[T] = Future()
        self._queue.put(_Item("call", (fn, future)))
        try:
            return future.result(timeout)
        except TimeoutError:
            if future.cancel():
                raise TimeoutError(f"the controller did not take the request within {timeout:g} s; "
                                   "it was withdrawn") from None
            return future.result()  # it started meanwhile: what it did is the answer

    def on_badge(self, uid: bytes | str) -> None:
        """A reader saw a badge: hash it here (the raw UID goes no further) and post the tap."""
        try:
            hashed: str | None = access.badge_hash(self.secret, uid)
        except access.AccessError:
            hashed = None  # an unreadable UID: refused as an unknown badge, without logging it
        if self.technician.take_badge(hashed):  # captured for enrolment: not a tap
            self.taps.consumed()
            return
        self.taps.posted()
        self._queue.put(_Item("badge", hashed))

    def on_reader_status(self, state: str, detail: str) -> None:
        """The reader says "found" or "lost" (its own thread)."""
        self._queue.put(_Item("reader", (state, detail)))

    def tap_and_wait(self, tap: Callable[[], None], timeout: float = 5.0) -> JsonObject:
        """Deliver a simulated tap and wait until the controller thread handled it; its outcome."""
        return self.taps.wait(tap, timeout)

    @property
    def last_tap(self) -> JsonObject:
        """The last tap's outcome (granted, reason, state before and after)."""
        return self.taps.last()

    def on_input(self, name: str, active: bool) -> None:
        """A GPIO input changed (debounced)."""
        make = reports.input_event(name, active)
        if make is not None:
            self.post(make)

    def on_firmware(self, event: object) -> None:
        """The streamer's thread reports: keep it quick; only what the controller thread needs is posted."""
        if isinstance(event, fw.LineAcked):
            self._acked = (event.acked_lines, event.line_no)
            return
        if isinstance(event, fw.FirmwareMessage) and event.fault is None:
            return
        if isinstance(event, fw.CommandReply):  # a manual command's answer: a calibration may wait on it
            self.calibration.on_reply(event)
            if event.ok and (mode := laser_mode_written(event.command)) is not None:
                self._queue.put(_Item("firmware", mode))  # a technician set $32: no greeting will say so
            return
        if isinstance(event, fw.FirmwareBusy | fw.ResendRequested | fw.StatusReport):
            return
        self._queue.put(_Item("firmware", event))

    def reload(self) -> None:
        """Re-read the config (SIGHUP; safe from a signal handler)."""
        self._queue.put(_Item("reload"))

    def stop(self) -> None:
        """Ask the loop to stop (safe from a signal handler)."""
        self._queue.put(_Item("stop"))

    # --- the controller thread --------------------------------------------------------------------

    def run(self) -> None:
        """Start up, serve until stop(), shut down cleanly (relay off)."""
        try:
            self._start_up()
            while not self._stopping:
                self._turn()
        finally:
            self._shut_down()

    def _start_up(self) -> None:
        # A busy worker (a job file being prepared) holds the interpreter until another thread has waited
        # this long: at Python's 5 ms, the e-stop's hand-offs (GPIO thread, then this one) add up.
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
        now = self.clock()
        self.actions.run(self.controller.start(now), now)
        self.storage.write("crash recovery", self._recover)
        self.telemetry = lifecycle.start_telemetry(self.config, self.log)
        self.directory.start()  # the lab directory: shared over the broker, applied on its own connection
        inputs = self.parts.io.read_inputs()
        self.parts.io.subscribe(self.on_input)
        for name, active in inputs.items():
            if active:
                self.on_input(name, True)
        self.parts.reader.start(self.on_badge, self.on_reader_status)
        self._connect(now)
        self.server = ControlServer(control_socket_path(self.state_dir), self.requests.handle).start()
        self.web.start()  # the upload queue read back; the HTTP server when `[web] enabled`
        self.notifier.ready(f"{self.config.node.machine}: {self.controller.state.value}")
        self.ready.set()
        log.info("fabnode %s/%s ready (state dir %s)", self.config.node.lab, self.config.node.machine,
                 self.state_dir)  # fmt: skip

    def _recover(self) -> None:
        report = self.log.recover(self.wall())
        if report.jobs or report.sessions:
            log.warning("recovered after a crash: jobs %s and sessions %s closed as interrupted",
                        report.jobs, report.sessions)  # fmt: skip

    def _turn(self) -> None:
        try:
            item: _Item | None = self._queue.get(timeout=self._wait_s(self.clock()))
        except queue.Empty:
            item = None
        now = self.clock()
        if item is not None:
            self._dispatch(item, now)
        deadline = self.controller.next_deadline()
        if deadline is not None and now >= deadline:
            self.feed(Tick(now))
        self._housekeeping(now)

    def _wait_s(self, now: float) -> float:
        times = [now + MAX_WAIT_S, self.controller.next_deadline(), self.jobs.checkpoint_due(now),
                 self._reconnect_at, self.books.retry_at, self._hello_at]
        return max(0.0, min(t for t in times if t is not None) - now)

    def _dispatch(self, item: _Item, now: float) -> None:
        try:
            payload: Any = item.payload  # its shape is given by its kind (see the posting methods)
            if item.kind == "event":
                self.feed(payload(now))
            elif item.kind == "badge":
                self.taps.handle(payload, now)
            elif item.kind == "reader":
                state, detail = payload
                self.health.reader_status(state, detail, now)
            elif item.kind == "firmware":
                self._firmware(payload, now)
            elif item.kind == "call":
                fn, future = payload
                if not future.set_running_or_notify_cancel():
                    return  # its caller gave up waiting: withdrawn
                try:
                    future.set_result(fn(now))
                except Exception as exc:
                    future.set_exception(exc)
            elif item.kind == "reload":
                self.reloader.reload(now)
            elif item.kind == "stop":
                self._stopping = True
        except Exception:  # one bad event must not stop the machine's controller
            log.exception("handling %s", item.kind)

    def feed(self, event: Event) -> Outcome:
        """Hand one event to the controller and carry out its actions; what it came to (reply, access)."""
        outcome = self.actions.run(self.controller.handle(event), event.now)
        if self.telemetry is not None:
            self.telemetry.wake()  # new outbox rows, if any: the publisher looks now, not at its next turn
        return outcome

    def _housekeeping(self, now: float) -> None:
        self.books.checkpoint(now)
        if self._reconnect_at is not None and now >= self._reconnect_at:
            self._connect(now)
        if self._hello_at is not None and now >= self._hello_at:
            self._hello()
        self.books.retry(now)
        self._supervise_telemetry(now)
        if self.notifier.watchdog_s is not None and now >= self._watchdog_at:
            self.notifier.watchdog()
            self._watchdog_at = now + self.notifier.watchdog_s

    def _supervise_telemetry(self, now: float) -> None:
        # A bug in the publisher must not silence a node for days: records wait safely in the outbox,
        # so a fresh publisher (at most one a minute) simply carries on from the region's last ack.
        if self.telemetry is None or not self.telemetry.crashed or now < self._telemetry_retry_at:
            return
        log.error("telemetry publisher stopped unexpectedly: starting a new one")
        self._telemetry_retry_at = now + TELEMETRY_RESTART_EVERY_S
        self.restart_telemetry()

    def _storage_trouble(self, error: str) -> None:
        # Kept behind the record that failed, so the fault row says when the trouble began.
        self.record_fault("storage", f"usage log cannot be written ({error}) in {self.state_dir}: "
                                     "records kept, sessions refused")  # fmt: skip

    def report_storage(self, now: float) -> None:
        """Tell the controller whether the usage log can record new sessions and jobs (before a decision)."""
        problem = self.storage.problem()
        if problem != self._storage_told:
            self._storage_told = problem
            self.feed(StorageChanged(now, problem))

    def record_fault(self, kind: str, detail: str) -> None:
        """A fault row, through the storage guard (a full disk delays it, never loses it)."""
        self.books.record_fault(kind, detail)

    def restart_telemetry(self) -> None:
        """New telemetry settings: stop the publisher, start one with them (records wait in the outbox)."""
        publisher, self.telemetry = self.telemetry, None
        lifecycle.stop_telemetry(publisher)
        self.telemetry = lifecycle.start_telemetry(self.config, self.log)
        self.directory.restart()

    # --- the firmware -----------------------------------------------------------------------------

    def _connect(self, now: float) -> None:
        if self.streamer is not None:  # a lost port: this streamer's thread has stopped driving it
            self.streamer.close()
            self.streamer = None
        try:
            self.streamer = Streamer(SerialLink(self.parts.port, self.parts.baud), self.parts.make_protocol(),
                                     self.on_firmware, self.clock)  # fmt: skip
        except PortLost as exc:
            self.streamer = None
            self._reconnect_at = now + self.config.serial.reconnect_every_s
            self.health.port_absent(exc.reason, now)
            self.firmware_settled.set()  # nothing to wait for: a job is refused as not connected
            return
        self.firmware_settled.clear()
        self.laser_mode_off = LASER_MODE_UNREAD if self.config.machine.firmware == GRBL else None
        self._reconnect_at = None
        # A board we lost touch with may still be heating: once it answers, tell it to stop.
        self._heaters_off_on_greeting = self.health.port_open(now)
        # A board that does not reset on open never greets: speak to it after GREETING_WAIT_S anyway.
        self._hello_at = now + GREETING_WAIT_S

    def reopen_port(self, now: float) -> None:
        """New serial settings (a reload, after the job): reopen the port with them."""
        serial = self.config.serial
        if serial.port != SIM_PORT:
            self.parts.port = serial.port
        self.parts.baud = serial.baud
        config = self.config
        self.parts.make_protocol = lambda: make_protocol(config, check_laser_mode=True)
        self._connect(now)

    def reopen_after_job(self, now: float) -> None:
        """A job ended: serial settings a reload left waiting apply now."""
        self.reloader.apply_after_job(now)

    def _firmware(self, event: object, now: float) -> None:
        job = self.jobs.current
        if isinstance(event, Progress):
            self.jobs.acked(event.lines_acked, event.last_line_no)
        elif isinstance(event, StreamEnded):
            if job is not None and job.job_id == event.name:
                self.jobs.acked(event.lines_acked, event.last_line_no)
            failure = event.kind if event.status is fw.JobStatus.FAILED else None
            self.feed(JobEnded(now, event.name, event.status, event.reason, failure))
        elif isinstance(event, fw.JobStateChanged) and job is not None:
            moved = reports.job_state_event(event.state, event.reason, job.job_id, now)
            if moved is not None:
                (self.jobs.paused if isinstance(moved, JobPaused) else self.jobs.resumed)(now)
                self.feed(moved)
        elif isinstance(event, fw.Temperatures):
            if (hotend := reports.temperatures(event.readings, self.temperatures, now)) is not None:
                self.feed(hotend)
        elif isinstance(event, fw.FirmwareReady):
            self._greeted(event)
        elif isinstance(event, fw.LaserMode):
            self.laser_mode_off = None if event.enabled else event.setting
            self.firmware_settled.set()  # a laser settles once its mode is known (see _hello)
            if not event.enabled:
                log.warning("GRBL laser mode is off (%s): jobs are refused until a technician sets $32=1",
                            shown(event.setting))
        elif isinstance(event, fw.FirmwareMessage):
            if event.fault is not None:  # classified by the protocol, which set it only with no job running
                self.feed(FirmwareFault(now, event.fault, event.text))
        elif isinstance(event, LinkLost):
            self.health.port_lost(event.reason, now)
            self._reconnect_at = now + self.config.serial.reconnect_every_s
        elif isinstance(event, fw.AlarmRaised):
            log.warning("firmware alarm %d: %s", event.code, event.meaning)

    def _greeted(self, event: fw.FirmwareReady) -> None:
        log.info("firmware greeted: %s", shown(event.text))
        self._hello()

    def _hello(self) -> None:
        """The board answers (or was given time to): heaters off after a lost port, temperature reports."""
        self._hello_at = None
        if self.laser_mode_off != LASER_MODE_UNREAD:  # a laser waits for its $$ answer (LaserMode)
            self.firmware_settled.set()
        streamer = self.streamer
        if self.config.machine.firmware != MARLIN or streamer is None:
            return
        if self._heaters_off_on_greeting and not streamer.job_active:
            self._heaters_off_on_greeting = False
            log.info("firmware port back: heaters off (%s)", ", ".join(HEATERS_OFF))
            for command in HEATERS_OFF:
                streamer.send_command(command)
        streamer.send_command("M155 S2")  # temperatures keep coming, for the cooldown

    def last_acked(self) -> tuple[int, int]:
        """(lines acknowledged, last file line) as the streamer last reported them."""
        return self._acked

    def reset_acked(self) -> None:
        """A new job starts counting from zero."""
        self._acked = (0, 0)

    # --- stopping ---------------------------------------------------------------------------------

    def _shut_down(self) -> None:
        self.notifier.stopping()
        try:
            self._stop_job()
            self.actions.close_session(self.controller.session, "fabnode stopped", self.clock())
        except Exception:
            log.exception("closing the job and session at stop")
        server, streamer, publisher, self.telemetry = self.server, self.streamer, self.telemetry, None
        steps = (server.stop if server is not None else None, self.web.stop,
                 streamer.close if streamer is not None else None, self.directory.stop,
                 lambda: lifecycle.stop_telemetry(publisher), lambda: lifecycle.last_records(self.storage))
        for step in steps:
            try:
                if step is not None:
                    step()
            except Exception:
                log.exception("stopping")
        self.parts.io.set_relay(False)
        self.parts.close()
        self.log.close()
        log.info("fabnode stopped; relay off")

    def _stop_job(self) -> None:
        job = self.jobs.current
        if job is None:
            return
        if self.streamer is not None and self.streamer.job_active:
            self.streamer.cancel("fabnode stopped")
            deadline = self.clock() + STOP_JOB_WAIT_S
            while self.streamer.job_active and self.clock() < deadline:
                try:
                    item = self._queue.get(timeout=0.1)
                except queue.Empty:
                    continue
                if item.kind == "firmware" and isinstance(item.payload, Progress | StreamEnded):
                    self.jobs.acked(item.payload.lines_acked, item.payload.last_line_no)
        self.jobs.acked(*self.last_acked())
        self.jobs.finish(fw.JobStatus.CANCELLED, "fabnode stopped", self.clock())
