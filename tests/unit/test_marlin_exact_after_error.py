"""MarlinHost against the Marlin simulator's cut-faithful firmware: after a refused line, exact.

Marlin reads its RX buffer empty when it refuses a line, and the tail of the line that was arriving
runs as a command if it begins at one. The bytes here arrive in chunks of any size, so a flush can
cut anywhere, and noise hits one byte of a line now and then. Until the link shows an error the
chunks end at line ends; from the first refusal on, the host sends one line at a time
(drivers.marlin.caution), and whatever the cuts, the firmware runs the job's commands in order,
each once. The same host pipelining after errors runs some twice: the test can tell.
"""

from __future__ import annotations

import random

from drivers.events import JobCompleted, JobFailed
from drivers.gcode_text import compact_for_wire
from drivers.marlin.host import MarlinHost
from simulators.marlin.firmware import MarlinConfig, MarlinFirmware
from simulators.wire import flip_bit
from tests.unit.test_sim_marlin_cuts import FakeWire

TICK_S = 0.001
RX_BUFFER = 128
HOST_OWN = ("M110", "M155", "M105")


def corrupt_line(line: bytearray, rng: random.Random) -> None:
    """Flip one bit of one byte before the newline, as the simulated wire's noise does."""
    at = rng.randrange(len(line) - 1)
    line[at] = flip_bit(line[at], rng)


def run(job: list[str], seed: int, noise: float, single_line_after_error: int) -> tuple[list[str], bool]:
    """Stream `job`; the commands the firmware ran (the host's own aside) and whether it completed."""
    rng = random.Random(seed)
    ran: list[str] = []
    firmware = MarlinFirmware(MarlinConfig(time_scale=0, greet_on_open=False, faithful_cuts=True),
                              on_executed=ran.append)  # fmt: skip
    wire = FakeWire()
    firmware.attach(wire)  # type: ignore[arg-type]
    firmware.poll(0.0)
    wire.replies.clear()
    host = MarlinHost(temperature_interval_s=0, single_line_after_error=single_line_after_error)
    host.start_job(job, 0.0)
    on_wire = bytearray()  # sent, not yet arrived
    line = bytearray()
    sent = arrived_total = 0
    whole_until: int | None = None  # bytes that arrive as whole lines: all sent before the fallback
    for tick in range(200_000):
        now = tick * TICK_S
        events = host.poll(now)
        if whole_until is None and (host.single_line or not single_line_after_error) and host.resends:
            whole_until = sent
        for byte in host.data_to_send(now):
            sent += 1
            line.append(byte)
            if byte == 0x0A:
                if rng.random() < noise:
                    corrupt_line(line, rng)
                on_wire += line
                line.clear()
        # whole lines until the host fell back and all it sent before has arrived, then any split
        if whole_until is None or arrived_total < whole_until:
            count = on_wire.find(b"\n") + 1
        else:
            count = min(len(on_wire), rng.randint(1, 12))
        arrived, on_wire[:count] = bytes(on_wire[:count]), b""
        arrived_total += count
        room = RX_BUFFER - len(wire.rx)
        wire.rx += arrived[:room]  # past the RX buffer, bytes are dropped
        wire.now = now
        firmware.poll(now)
        if wire.replies:
            events += host.receive(bytes(wire.replies), now)
            wire.replies.clear()
        if any(isinstance(e, JobCompleted | JobFailed) for e in events):
            # an unknown command (a tail of digits, a line whose N was hit) is answered, never run
            run_ = [c for c in ran if not c.startswith(HOST_OWN) and firmware.handler_for(c) is not None]
            return run_, any(isinstance(e, JobCompleted) for e in events)
    raise AssertionError(f"seed {seed}: the job did not end")


def job_of(rng: random.Random, lines: int) -> list[str]:
    moves = [f"G1 X{rng.uniform(0, 200):.3f} Y{rng.uniform(0, 200):.3f} E{rng.uniform(0, 2):.5f}"
             for _ in range(lines)]  # fmt: skip
    return ["G28", "M104 S200", "G92 E0", *moves, "M107"]


def expected(job: list[str]) -> list[str]:
    return [" ".join(c.split()) for c in map(compact_for_wire, job) if c]


def test_after_the_first_refusal_every_command_runs_once_in_order_whatever_the_cuts() -> None:
    for seed in range(12):
        job = job_of(random.Random(seed), 150)
        ran, completed = run(job, seed, noise=0.05, single_line_after_error=500)
        assert completed, f"seed {seed}"
        assert ran == expected(job), f"seed {seed}"


def test_a_host_that_keeps_pipelining_after_errors_runs_a_cut_tail() -> None:
    inexact = []
    for seed in range(12):
        job = job_of(random.Random(seed), 150)
        ran, _ = run(job, seed, noise=0.05, single_line_after_error=0)
        inexact += [seed] if ran != expected(job) else []
    assert inexact, "no seed cut a line where its tail runs: the test above proves nothing"
