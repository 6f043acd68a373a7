"""Property tests: MarlinHost against OctoPrint's virtual printer's line handling, one fault per job.

The virtual printer (simulators.marlin.virtual, written from OctoPrint's virtual.py) keeps its RX
buffer after a refused line and answers every line in order: `Error: expected line <e> got <k>`,
`Resend:<e>`, `ok`. Its `resend_with_timeout` fault asks for line n again, counts n taken (never
running it) and ignores the next line, so the host's resend of n arrives as a duplicate: issue 9's
storm, where each request made the host resend lines the firmware was about to take.
"""

from __future__ import annotations

import random
from collections import deque

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.events import JobCompleted, JobFailed
from drivers.gcode_text import compact_for_wire
from drivers.marlin.host import MarlinHost
from simulators.marlin.virtual import VirtualPrinterChecker

TICK_S = 0.01
MAX_TICKS = 6_000


class VirtualPrinterModel:
    """One line at a time, in order, no flush; one `resend_with_timeout` at line `fault_at`."""

    def __init__(self, fault_at: int) -> None:
        self.checker = VirtualPrinterChecker()
        self.fault_at = fault_at
        self.fired = False
        self.ignore_next = False
        self.rx = bytearray()
        self.executed: list[str] = []
        self.requests = 0
        self.out: list[str] = []

    def step(self) -> None:
        """Read and answer one line, if a whole one is there."""
        if b"\n" not in self.rx:
            return
        end = self.rx.index(b"\n")
        text = self.rx[:end].decode("latin-1").strip()
        del self.rx[: end + 1]
        if not text:
            return
        if self.ignore_next:
            self.ignore_next = False
            return
        verdict = self.checker.check(text)
        if verdict.accepted and verdict.line_number == self.fault_at and not self.fired:
            self.fired = True
            self.checker.last_n = self.fault_at - 1
            self.refuse("Missing checksum")
            self.checker.last_n = self.fault_at
            self.ignore_next = True
        elif not verdict.accepted:
            self.refuse(verdict.error)
        elif verdict.command == "M105":
            self.out.append("ok T:21.0 /0.0 B:20.5 /0.0 @:0 B@:0")
        else:
            if verdict.line_number is not None and not verdict.command.startswith("M110"):
                self.executed.append(verdict.command)
            self.out.append("ok")

    def refuse(self, error: str) -> None:
        self.requests += 1
        self.out += [f"Error: {error}", f"Resend:{self.checker.last_n + 1}", "ok"]


def run_job(commands: list[str], fault_at: int, seed: int) -> tuple[VirtualPrinterModel, list[object]]:
    """Stream the job through the model, tick by tick, until the host says it ended."""
    rng = random.Random(seed)
    model = VirtualPrinterModel(fault_at)
    host = MarlinHost(
        use_advanced_ok=False, poke_after_s=0.5, no_answer_after_s=1000.0, temperature_interval_s=0
    )
    events: list[object] = []
    wire: deque[int] = deque()
    host.start_job(commands, 0.0)
    for tick in range(MAX_TICKS):
        now = tick * TICK_S
        deadline = host.next_deadline()
        if deadline is not None and now >= deadline:
            events += host.poll(now)
        wire.extend(host.data_to_send(now))
        model.rx += bytes(wire.popleft() for _ in range(min(len(wire), rng.randrange(4, 24))))
        for _ in range(rng.randrange(0, 3)):
            model.step()
        if model.out:
            events += host.receive("".join(f"{r}\n" for r in model.out).encode(), now)
            model.out.clear()
        if any(isinstance(e, JobCompleted | JobFailed) for e in events):
            break
    return model, events


command = st.builds(
    "G1 X{:.1f} Y{:.1f}".format, st.floats(0, 200, allow_nan=False), st.floats(0, 200, allow_nan=False)
) | st.sampled_from(["G28", "M104 S200", "G92 E0", "M106 S255"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(commands=st.lists(command, min_size=5, max_size=80), fault=st.floats(0, 1), seed=st.integers(0, 2**32))
def test_one_fault_costs_one_resend_and_at_most_the_lines_in_flight(commands, fault, seed):
    fault_at = 1 + int(fault * (len(commands) - 1))
    model, events = run_job(commands, fault_at, seed)
    ended = [e for e in events if isinstance(e, JobCompleted | JobFailed)]
    assert ended and isinstance(ended[0], JobCompleted), f"job did not complete: {events[-5:]}"
    # the virtual printer counts the fault's line taken and never runs it: everything else, in order
    sent = [compact_for_wire(c) for c in commands]  # the host sends lines compact
    assert model.executed == sent[: fault_at - 1] + sent[fault_at:]
    assert ended[0].resends == 1
    # 127-byte window, lines of 9 bytes and more: at most 14 in flight, each refused once, and the
    # one duplicate the fault makes
    assert model.requests <= 1 + 14 + 1
