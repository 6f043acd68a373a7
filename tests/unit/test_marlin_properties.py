"""Property tests: MarlinHost against a small Marlin model over a noisy wire.

The model below is written from Marlin's documented behaviour with its own checksum code (it does
not import drivers.marlin.wire): line number checked before the checksum; a refused line gets
`Error:`, `Resend: <last+1>` and `ok`, and every later line is refused too (each with its own
request) unless Marlin flushed it from its RX buffer first, which it does at random here, so the
number of duplicate requests varies; M110 taken whatever its number; a 127-byte RX buffer whose
overflowing bytes are lost; a BUFSIZE command queue; one `ok` per command, in order.
Whatever the noise, the firmware must run exactly the job's commands, in order, once each.
"""

from __future__ import annotations

import random
import re
from collections import deque
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.events import JobCompleted, JobFailed, LineAcked
from drivers.gcode_text import compact_for_wire
from drivers.marlin.host import MarlinHost

TICK_S = 0.01
MAX_TICKS = 6_000


def xor_checksum(text: str) -> int:
    """Marlin's loop: XOR of every byte before the `*`."""
    value = 0
    for byte in text.encode("latin-1"):
        value ^= byte
    return value


def strtol(text: str) -> int:
    """C strtol(text, NULL, 10): leading blanks, optional sign, digits; 0 if none."""
    match = re.match(r"\s*([-+]?\d+)", text)
    return int(match.group(1)) if match else 0


class MarlinModel:
    """Just enough Marlin to check the host: RX buffer, line checks, command queue, `ok`s."""

    def __init__(self, rng: random.Random, *, advanced_ok: bool, flush_p: float, bufsize: int = 4) -> None:
        self.rng = rng
        self.advanced_ok = advanced_ok
        self.flush_p = flush_p
        self.bufsize = bufsize
        self.rx = bytearray()
        self.rx_size = 127
        self.overflow_bytes = 0
        self.queue: deque[tuple[str, int | None]] = deque()
        self.last_n = 0
        self.executed: list[str] = []  # numbered commands run (M110 and host M105 pokes aside)
        self.unnumbered: list[str] = []
        self.out: list[str] = []

    def feed(self, data: bytes) -> None:
        for byte in data:
            if len(self.rx) < self.rx_size:
                self.rx.append(byte)
            else:
                self.overflow_bytes += 1

    def read_lines(self) -> None:
        while len(self.queue) < self.bufsize and b"\n" in self.rx:
            end = self.rx.index(b"\n")
            raw = self.rx[:end].decode("latin-1")
            del self.rx[: end + 1]
            self.take(raw.split(";", 1)[0].strip())

    def take(self, text: str) -> None:
        if not text:
            return
        if not text.startswith("N"):
            self.queue.append((text, None))
            return
        is_m110 = "M110" in text
        number_at = text.find("N", text.find("M110") + 4) if is_m110 else 0
        number = strtol(text[number_at + 1 :]) if number_at >= 0 else 0
        if number != self.last_n + 1 and not is_m110:
            self.refuse("Line Number is not Last Line Number+1")
            return
        star = text.rfind("*")
        if star < 0:
            self.refuse("No Checksum with line number")
            return
        if strtol(text[star + 1 :]) != xor_checksum(text[:star]):
            self.refuse("checksum mismatch")
            return
        self.last_n = number
        command = re.sub(r"^N\d+\s*", "", text[:star]).strip()
        self.queue.append((command, number))

    def refuse(self, error: str) -> None:
        self.out += [f"Error:{error}, Last Line: {self.last_n}", f"Resend: {self.last_n + 1}", "ok"]
        if self.rng.random() < self.flush_p and b"\n" in self.rx:
            # Marlin drops what waits in its RX buffer: those lines get no request of their own
            # (whole lines here: a partial one would become a line no checksum protects).
            del self.rx[: self.rx.rindex(b"\n") + 1]

    def execute_one(self) -> None:
        if not self.queue:
            return
        command, number = self.queue.popleft()
        if number is None:
            self.unnumbered.append(command)
        elif command != "M105" and not command.startswith("M110"):
            self.executed.append(command)
        if command == "M105":
            self.out.append("ok T:21.0 /0.0 B:20.5 /0.0 @:0 B@:0")
        elif self.advanced_ok:
            n = f" N{number}" if number is not None else ""
            self.out.append(f"ok{n} P15 B{self.bufsize - len(self.queue) - 1}")
        else:
            self.out.append("ok")


def corrupt(data: bytes, rng: random.Random, p: float) -> bytes:
    """Flip at most one byte per line, never the leading character or the newline."""
    lines = data.split(b"\n")
    for i, line in enumerate(lines):
        if len(line) > 2 and rng.random() < p:
            at = rng.randrange(1, len(line))
            lines[i] = line[:at] + bytes([rng.randrange(0x20, 0x7F)]) + line[at + 1 :]
    return b"\n".join(lines)


@dataclass(frozen=True)
class Noise:
    """What goes wrong on the wire and in the firmware."""

    seed: int = 0
    advanced_ok: bool = False
    corrupt_p: float = 0.0  # chance that one byte of a line the host writes is changed
    drop_ok_p: float = 0.0  # chance that an `ok` line is lost on its way back
    flush_p: float = 0.0  # chance that Marlin flushes its RX buffer when it refuses a line


def run_job(lines: list[str], noise: Noise) -> tuple[MarlinModel, list[object]]:
    """Stream the job through the model, tick by tick, until the host says it ended (or time runs out)."""
    rng = random.Random(noise.seed)
    model = MarlinModel(rng, advanced_ok=noise.advanced_ok, flush_p=noise.flush_p)
    host = MarlinHost(use_advanced_ok=noise.advanced_ok, poke_after_s=0.5, no_answer_after_s=1000.0)
    events: list[object] = []
    wire: deque[int] = deque()
    host.start_job(lines, 0.0)
    for tick in range(MAX_TICKS):
        now = tick * TICK_S
        deadline = host.next_deadline()
        if deadline is not None and now >= deadline:
            events += host.poll(now)
        wire.extend(corrupt(host.data_to_send(now), rng, noise.corrupt_p))
        model.feed(bytes(wire.popleft() for _ in range(min(len(wire), rng.randrange(4, 24)))))
        model.read_lines()
        for _ in range(rng.randrange(0, 3)):
            model.execute_one()
            model.read_lines()
        replies = [r for r in model.out if not (r.startswith("ok") and rng.random() < noise.drop_ok_p)]
        model.out.clear()
        if replies:
            events += host.receive("".join(f"{r}\n" for r in replies).encode(), now)
        if any(isinstance(e, JobCompleted | JobFailed) for e in events):
            break
    return model, events


def job_commands(lines: list[str]) -> list[str]:
    """What the firmware must run: each line without its comment, blanks skipped, sent compact."""
    return [c for c in map(compact_for_wire, lines) if c]


command = st.builds(
    "G1 X{:.2f} Y{:.2f} E{:.3f}".format,
    st.floats(0, 200, allow_nan=False),
    st.floats(0, 200, allow_nan=False),
    st.floats(0, 5, allow_nan=False),
) | st.sampled_from(["G28", "M104 S200", "G92 E0", "M106 S255", "G4 P0", "M400"])
file_line = command | st.sampled_from(["", "; layer change", "   ", "G1 Z0.3 ; lift"])
job = st.lists(file_line, min_size=0, max_size=80)
noisy = st.builds(
    Noise,
    seed=st.integers(0, 2**32),
    advanced_ok=st.booleans(),
    corrupt_p=st.sampled_from([0.0, 0.05, 0.2]),
    drop_ok_p=st.sampled_from([0.0, 0.02, 0.1]),
    flush_p=st.sampled_from([0.0, 0.5, 1.0]),
)
clean = st.builds(Noise, seed=st.integers(0, 2**32), advanced_ok=st.booleans())
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(lines=job, noise=noisy)
def test_firmware_runs_every_job_command_once_in_order(lines, noise):
    model, events = run_job(lines, noise)
    completed = [e for e in events if isinstance(e, JobCompleted)]
    assert completed, f"job did not complete: {events[-5:]}"
    assert model.executed == job_commands(lines)
    assert completed[0].lines == len(job_commands(lines))


@SETTINGS
@given(lines=job, noise=noisy)
def test_acknowledged_lines_were_run_and_counted_in_file_order(lines, noise):
    model, events = run_job(lines, noise)
    acked = [e for e in events if isinstance(e, LineAcked)]
    file_lines = [i for i, line in enumerate(lines, 1) if line.split(";", 1)[0].strip()]
    assert [e.line_no for e in acked] == file_lines
    assert [e.acked_lines for e in acked] == list(range(1, len(file_lines) + 1))
    assert len(model.executed) >= len(acked)  # acknowledged means run


@SETTINGS
@given(lines=job, noise=clean)
def test_a_clean_wire_never_overflows_the_rx_buffer(lines, noise):
    model, _ = run_job(lines, noise)
    assert model.overflow_bytes == 0
    assert model.executed == job_commands(lines)
