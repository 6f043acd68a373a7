"""The technician's relay check times out by itself: TechnicianDesk on a stand-in daemon, clock in hand."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from fabnode.machine.controller import Controller
from fabnode.machine.types import TemperatureReported, Tick
from fabnode.node.technician import TECHNICIAN_HOLD_S, TechnicianDesk
from fabnode.technician.calibrate import member_job_refusal


class Pins:
    """The GPIO outputs as last written."""

    def __init__(self) -> None:
        self.relay: list[bool] = []

    def set_relay(self, on: bool) -> None:
        self.relay.append(on)

    def set_leds(self, green: bool, red: bool, blink: bool = False) -> None:
        pass


def desk_at(clock: list[float]) -> tuple[TechnicianDesk, Pins]:
    pins = Pins()
    daemon: Any = SimpleNamespace(
        controller=Controller(), parts=SimpleNamespace(io=pins), actions=SimpleNamespace(leds={}),
        config=SimpleNamespace(node=SimpleNamespace(machine="laser-1")),
        call=lambda fn, timeout=10.0: fn(clock[0]))
    daemon.controller.start(0.0)
    return TechnicianDesk(daemon), pins


def test_relay_switched_on_from_locked_goes_off_after_the_hold() -> None:
    clock = [100.0]
    desk, pins = desk_at(clock)
    assert desk.relay_request({"cmd": "relay", "on": True})["ok"]
    assert pins.relay == [True] and desk.deadline() == 100.0 + TECHNICIAN_HOLD_S
    desk.before(TemperatureReported(120.0, 25.0))  # background news: the check goes on
    desk.before(Tick(130.0))
    desk.housekeeping(100.0 + TECHNICIAN_HOLD_S - 0.1)
    assert pins.relay == [True]
    desk.housekeeping(100.0 + TECHNICIAN_HOLD_S)
    assert pins.relay == [True, False] and desk.deadline() is None


def test_relay_request_needs_a_boolean() -> None:
    desk, pins = desk_at([0.0])
    reply = desk.relay_request({"cmd": "relay", "on": "yes"})
    assert reply["ok"] is False and "true or false" in reply["error"] and pins.relay == []


def test_the_cli_guard_reads_the_daemons_nested_status_reply() -> None:
    running = {"ok": True, "status": {"state": "running", "machine": "prusa-1",
                                      "session": {"maintenance": False}}}  # fmt: skip
    assert member_job_refusal(running, "?") == "a member's job is running on prusa-1: calibrate after it ends"
    technician = {"ok": True, "status": {"state": "running", "session": {"maintenance": True}}}
    assert member_job_refusal(technician, "prusa-1") is None
