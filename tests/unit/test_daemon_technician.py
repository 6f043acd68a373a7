"""The technician's relay check times out by itself: TechnicianDesk on a stand-in loop, clock in hand."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from fabnode.machine.actions import Reply, SwitchRelay
from fabnode.machine.controller import Controller
from fabnode.machine.events import TemperatureReported, Tick
from fabnode.node.ports import Outcome
from fabnode.node.technician import TECHNICIAN_HOLD_S, TechnicianDesk
from fabnode.technician.calibrate import member_job_refusal
from tests.unit.controller_settings import settings_for_tests


class Pins:
    """The GPIO outputs as last written."""

    def __init__(self) -> None:
        self.relay: list[bool] = []

    def set_relay(self, on: bool) -> None:
        self.relay.append(on)

    def set_leds(self, green: bool, red: bool, blink: bool = False) -> None:
        pass


class StandIn:
    """The loop as the desk sees it: the controller thread's call and feed, the relay written from actions."""

    def __init__(self, clock: list[float], pins: Pins) -> None:
        self.controller = Controller(settings_for_tests())
        self.config = SimpleNamespace(node=SimpleNamespace(machine="laser-1"))
        self.parts = SimpleNamespace(io=pins)
        self.clock, self.pins = clock, pins
        self.controller.start(0.0)

    def call(self, fn: Any, timeout: float = 10.0) -> Any:
        return fn(self.clock[0])

    def feed(self, event: Any) -> Outcome:
        reply = None
        for action in self.controller.handle(event):
            if isinstance(action, SwitchRelay):
                self.pins.set_relay(action.on)
            elif isinstance(action, Reply):
                reply = action
        return Outcome(reply)


def desk_at(clock: list[float]) -> tuple[TechnicianDesk, Pins, StandIn]:
    pins = Pins()
    daemon = StandIn(clock, pins)
    return TechnicianDesk(daemon), pins, daemon  # type: ignore[arg-type]


def test_relay_switched_on_from_locked_goes_off_after_the_hold() -> None:
    clock = [100.0]
    desk, pins, daemon = desk_at(clock)
    assert desk.relay_request({"cmd": "relay", "on": True})["ok"]
    assert pins.relay == [True] and daemon.controller.next_deadline() == 100.0 + TECHNICIAN_HOLD_S
    daemon.feed(TemperatureReported(120.0, 25.0))  # background news: the check goes on
    daemon.feed(Tick(130.0))
    daemon.feed(Tick(100.0 + TECHNICIAN_HOLD_S - 0.1))
    assert pins.relay == [True]
    daemon.feed(Tick(100.0 + TECHNICIAN_HOLD_S))
    assert pins.relay == [True, False] and daemon.controller.next_deadline() is None


def test_relay_request_needs_a_boolean() -> None:
    desk, pins, _ = desk_at([0.0])
    reply = desk.relay_request({"cmd": "relay", "on": "yes"})
    assert reply["ok"] is False and "true or false" in reply["error"] and pins.relay == []


def test_the_cli_guard_reads_the_daemons_nested_status_reply() -> None:
    running = {"ok": True, "status": {"state": "running", "machine": "prusa-1",
                                      "session": {"maintenance": False}}}  # fmt: skip
    assert member_job_refusal(running, "?") == "a member's job is running on prusa-1: calibrate after it ends"
    technician = {"ok": True, "status": {"state": "running", "session": {"maintenance": True}}}
    assert member_job_refusal(technician, "prusa-1") is None
