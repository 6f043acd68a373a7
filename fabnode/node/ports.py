"""The node's narrow parts: what the loop's helpers need of the hardware and of the loop itself.

Each is a `typing.Protocol` (structural: drivers, simulators and the loop satisfy them without importing
this module). Hardware: `MachineIO` (relay, LEDs, buzzer, inputs), `BadgeReader`, `FirmwareLink` (the
streamer on the firmware's port), `Publisher` (telemetry); records are the usage log behind the storage
guard. The loop (fabnode.node.loop) hands each helper only the ports it uses; no helper imports the loop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from fabnode.config.settings import Config
from fabnode.machine.actions import RecordAccess, Reply
from fabnode.machine.controller import Controller
from fabnode.machine.events import Event
from fabnode.node.inbox import Inbox
from fabnode.node.jobs import JobBook
from fabnode.node.sdnotify import Notifier
from fabnode.records.storage_guard import StorageGuard
from fabnode.records.usage import UsageLog

InputCallback = Callable[[str, bool], None]
T = TypeVar("T")
JsonObject = dict[str, Any]  # a control-socket request or reply, as JSON decodes it


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one event came to: the request's reply, the tap's access decision, why a job did not start."""

    reply: Reply | None = None
    access: RecordAccess | None = None
    not_started: str | None = None
    inbox_file: str | None = None  # the tap starts this inbox file (CheckInboxFile)


# --- hardware ---------------------------------------------------------------------------------------


class MachineIO(Protocol):
    """The machine's GPIO: relay, LEDs, buzzer and the debounced inputs (drivers.gpio.machine_io)."""

    def set_relay(self, on: bool) -> None: ...

    def set_leds(self, green: bool, red: bool, blink: bool = False) -> None: ...

    def buzz(self, pattern: str) -> None: ...

    def read_inputs(self) -> dict[str, bool]: ...

    def subscribe(self, callback: InputCallback) -> None: ...

    def close(self) -> None: ...


class BadgeReader(Protocol):
    """A badge reader (drivers.badge): calls on_badge(uid) and on_status("found" | "lost", detail)."""

    def start(self, on_badge: Callable[[bytes], None], on_status: Callable[[str, str], None] | None = None,
              on_leave: Callable[[bytes], None] | None = None) -> None: ...  # fmt: skip

    def stop(self, timeout: float = 10.0) -> None: ...


class SimReader(BadgeReader, Protocol):
    """The simulated reader (simulators.badge): a tap and its cable, by hand."""

    def tap(self, uid: bytes) -> None: ...

    def unplug(self) -> None: ...

    def plug(self) -> None: ...


class SimPins(Protocol):
    """The simulated GPIO's hands (simulators.gpio.SimGpio)."""

    def press_estop(self) -> None: ...

    def release_estop(self) -> None: ...

    def open_lid(self) -> None: ...

    def close_lid(self) -> None: ...

    def set_busy(self, drawing: bool) -> None: ...

    def relay_on(self) -> bool: ...


class SimFirmware(Protocol):
    """A simulated board on a pty (simulators.marlin / simulators.grbl)."""

    def stop(self) -> None: ...


class Lost(Protocol):
    """Why a firmware link went (drivers.streamer.LinkLost)."""

    @property
    def reason(self) -> str: ...


class FirmwareLink(Protocol):
    """The streamer on the firmware's port (drivers.streamer.Streamer), as the node drives it."""

    @property
    def job_active(self) -> bool: ...

    @property
    def lost(self) -> Lost | None: ...

    def start_job(self, lines: list[str], name: str = "") -> None: ...

    def pause(self) -> None: ...

    def door_hold(self) -> None: ...

    def resume(self) -> None: ...

    def cancel(self, reason: str = "cancelled") -> None: ...

    def send_command(self, line: str) -> None: ...

    def close(self, timeout_s: float = 5.0) -> None: ...


class Publisher(Protocol):
    """The telemetry publisher (fabnode.telemetry.publisher.TelemetryPublisher)."""

    @property
    def crashed(self) -> bool: ...

    def wake(self) -> None: ...

    def publish_state(self, state: str, detail: str | None = None) -> None: ...

    def status(self) -> dict[str, object]: ...

    def stop(self, timeout: float = 5.0) -> None: ...


class Port(Protocol):
    """Where the firmware is reached (fabnode.node.wiring.Parts)."""

    @property
    def port(self) -> str: ...

    @property
    def baud(self) -> int: ...


class HasIO(Protocol):
    """The parts that carry the GPIO (fabnode.node.wiring.Parts)."""

    @property
    def io(self) -> MachineIO: ...


# --- what helpers need of the loop ------------------------------------------------------------------


class ReaderState(Protocol):
    """Whether the badge reader is there (fabnode.node.health.PartsHealth)."""

    @property
    def reader_present(self) -> bool | None: ...

    @property
    def reader_detail(self) -> str: ...


class HasConfig(Protocol):
    """The config in force."""

    @property
    def config(self) -> Config: ...


class HasController(Protocol):
    """The controller, whose actions and replies are the answer to every event."""

    @property
    def controller(self) -> Controller: ...


class HasJobs(Protocol):
    """The job book: the running job's row, preflight and progress."""

    @property
    def jobs(self) -> JobBook: ...


class HasInbox(Protocol):
    """The inbox folder, when the config names one."""

    @property
    def inbox(self) -> Inbox | None: ...


class HasStreamer(Protocol):
    """The live firmware link (replaced when the port is reopened)."""

    @property
    def streamer(self) -> FirmwareLink | None: ...


class HasTelemetry(Protocol):
    """The telemetry publisher, when a broker is configured."""

    @property
    def telemetry(self) -> Publisher | None: ...


class Feeds(Protocol):
    """Feed one event to the controller (controller thread) and carry out its actions."""

    def feed(self, event: Event) -> Outcome: ...


class Loop(HasConfig, HasController, Protocol):
    """Run code in the controller thread (from a socket thread) and the config in force."""

    def call(self, fn: Callable[[float], T], timeout: float = 10.0) -> T: ...


class Link(HasConfig, HasStreamer, Protocol):
    """The loop's live firmware link, its port and the config."""

    @property
    def parts(self) -> Port: ...


class Firmware(Link, Loop, HasJobs, Feeds, Protocol):
    """What a firmware desk (fabnode.node.calibrate) needs: the link, the controller thread, the job book."""

    def wait_settled(self) -> bool: ...


class Records(Protocol):
    """The usage log behind the storage guard, and the two clocks' wall side."""

    @property
    def log(self) -> UsageLog: ...

    @property
    def storage(self) -> StorageGuard: ...

    def wall(self) -> datetime: ...


class TapHost(Records, HasConfig, HasController, HasInbox, Feeds, Protocol):
    """What fabnode.node.taps needs of the loop."""

    def report_storage(self, now: float) -> None: ...


class Wired(HasIO, Port, Protocol):
    """The GPIO and the firmware's port (fabnode.node.wiring.Parts)."""


class ActionHost(Records, HasConfig, HasJobs, HasStreamer, HasInbox, HasTelemetry, Protocol):
    """What the action runner (fabnode.node.actions) needs of the loop beside the GPIO."""

    @property
    def parts(self) -> Wired: ...

    @property
    def notifier(self) -> Notifier: ...

    def post(self, make: Callable[[float], Event]) -> None: ...

    def last_acked(self) -> tuple[int, int]: ...

    def reset_acked(self) -> None: ...

    def reopen_after_job(self, now: float) -> None: ...


class TechnicianHost(Loop, Feeds, Protocol):
    """What the technician's wiring checks (fabnode.node.technician) need of the loop."""

    @property
    def parts(self) -> HasIO: ...

    @property
    def health(self) -> ReaderState: ...


class ReloadHost(HasController, HasJobs, HasStreamer, Protocol):
    """What a config reload (fabnode.node.reload) changes in the loop."""

    config: Config
    inbox: Inbox | None

    @property
    def storage(self) -> StorageGuard: ...

    @property
    def parts(self) -> Port: ...

    def restart_telemetry(self) -> None: ...

    def reopen_port(self, now: float) -> None: ...


class SimParts(Port, Protocol):
    """The parts as the request desk sees them: the port, and which are simulated."""

    @property
    def sim_reader(self) -> SimReader | None: ...

    @property
    def sim_gpio(self) -> SimPins | None: ...

    @property
    def simulator(self) -> SimFirmware | None: ...


class Observed(HasConfig, HasController, HasJobs, HasInbox, Protocol):
    """What both the request desk and the status view read: the simulated parts, the storage, the laser."""

    @property
    def parts(self) -> SimParts: ...

    @property
    def storage(self) -> StorageGuard: ...

    @property
    def laser_mode_off(self) -> str | None: ...


class RequestHost(Observed, Records, Loop, HasStreamer, HasTelemetry, Feeds, Protocol):
    """What the control socket's request desk (fabnode.node.requests) needs of the loop."""

    @property
    def clock(self) -> Callable[[], float]: ...

    @property
    def health(self) -> ReaderState: ...

    @property
    def firmware_settled(self) -> threading.Event: ...

    def wait_settled(self) -> bool: ...

    def tap_and_wait(self, tap: Callable[[], None], timeout: float = 5.0) -> JsonObject: ...

    def report_storage(self, now: float) -> None: ...


class StatusHost(Observed, Protocol):
    """What `fabnode status` (fabnode.node.status) reads of the loop."""

    @property
    def temperatures(self) -> dict[str, dict[str, float | None]]: ...

    @property
    def started_at(self) -> float: ...
