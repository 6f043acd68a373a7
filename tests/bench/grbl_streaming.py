"""GRBL streaming: GrblHost in the Streamer beside a character-counting reference, measured in the same run.

The reference is gnea/grbl's doc/script/stream.py in its streaming mode, done well: each line as GRBL's
protocol.c keeps it (blanks and both kinds of comment stripped, upper case; stream.py strips `( )` but
leaves `;` comments and blank lines to GRBL), sent while the bytes of unanswered lines stay within the
128-byte RX buffer, and `?` written at 5 Hz outside that count, as fabnode polls (stream.py: 1 Hz).

efficiency = (bytes of the program as GRBL keeps them, with a newline per line) / (baud / 10) / job
time: the time the wire needs for the program as GRBL itself would have it, over the time the job
took. Both hosts are measured against that same limit, so the bytes a host spares count for it; a
host below 1.0 idles the wire or sends more. Median and best of the runs are shown: other work on a
shared machine only ever slows a run. "wire use" is each host's own bytes (`?` included) over the
wire's capacity in the job's time. Each run starts `fabnode sim grbl` as a subprocess (115200 baud,
1 ms one-way latency, 128-byte RX, instant moves: the wire is the only limit), runs interleaved.
Environment: FABNODE_BENCH_GRBL_RUNS (runs of each host per file, default 3),
FABNODE_BENCH_NAIVE_LINES (the one-line-in-flight host's prefix, default 2000 lines).
"""

from __future__ import annotations

import os
import re
import selectors
import statistics
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import serial

from tests.bench.data import bench_gcode_file
from tests.bench.streaming import BAUD, NAIVE_LINES, RX_BUFFER, Run, SimProcess, streamer_run

RUNS = int(os.environ.get("FABNODE_BENCH_GRBL_RUNS", "3"))
FILES = ("laser-jsdc.gcode", "laser-tball-engrave.gcode")
SIM_ARGS = ("--laser-mode",)
POLL_S = 0.2  # 5 Hz, GRBL's advice and fabnode's default
_STRIP = re.compile(r"\s|\(.*?\)")  # stream.py's own expression


def grbl_keeps(raw: str) -> str:
    """A file line as GRBL's protocol.c keeps it in its line buffer: no blanks, no comments, upper case."""
    return _STRIP.sub("", raw.split(";", 1)[0]).upper()


@dataclass
class Measured:
    """One host's runs on one file."""

    runs: list[Run]
    limit_bytes: int  # the program as GRBL keeps it

    def efficiencies(self) -> list[float]:
        return [self.limit_bytes / (BAUD / 10) / r.duration_s if r.duration_s > 0 else 0.0 for r in self.runs]

    @property
    def efficiency(self) -> float:
        return statistics.median(self.efficiencies())

    @property
    def best(self) -> float:
        return max(self.efficiencies())  # other work on the machine only ever slows a run down

    @property
    def wire_use(self) -> float:
        return statistics.median(r.efficiency for r in self.runs)

    def shown(self) -> str:
        last = self.runs[-1]
        each = ", ".join(f"{e:.3f}" for e in self.efficiencies())
        return (f"{self.efficiency:.3f} median, {self.best:.3f} best (runs {each}; {last.status}, "
                f"{last.lines_acked}/{last.lines_total} lines, {last.bytes_sent} B, {last.duration_s:.2f} s)")


def counting_reference(commands: Sequence[str], *sim_args: str) -> Run:
    """Character counting with `?` at 5 Hz, one thread, select() on the port (see the module doc)."""
    sim = SimProcess("grbl", *sim_args)
    frames = [c.encode("ascii") + b"\n" for c in commands]
    sent = acked = 0
    try:
        ser = serial.Serial(sim.port, BAUD, timeout=3)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not ser.readline().startswith(b"Grbl"):
            pass
        fd = ser.fileno()
        os.set_blocking(fd, False)
        selector = selectors.DefaultSelector()
        selector.register(fd, selectors.EVENT_READ)
        in_buffer, counts = 0, deque[int]()
        rx, cursor = b"", 0
        cpu0 = time.process_time()
        t0 = next_poll = time.monotonic()
        while acked < len(frames):
            now = time.monotonic()
            out = bytearray()
            if now >= next_poll:
                out += b"?"
                next_poll = now + POLL_S
            while cursor < len(frames) and in_buffer + len(frames[cursor]) <= RX_BUFFER:
                out += frames[cursor]
                counts.append(len(frames[cursor]))
                in_buffer += len(frames[cursor])
                cursor += 1
            while out:  # the pty takes kilobytes: this loop turns once
                written = os.write(fd, out)
                sent += written
                del out[:written]
            if not selector.select(max(next_poll - time.monotonic(), 0.0)):
                continue
            rx += os.read(fd, 65536)
            *lines, rx = rx.split(b"\n")
            for line in lines:
                if line.startswith((b"ok", b"error:")):
                    acked += 1
                    in_buffer -= counts.popleft()
                elif line.startswith((b"ALARM", b"Grbl")):
                    raise RuntimeError(f"character counting: {line!r} after {acked} lines")
        duration, cpu = time.monotonic() - t0, time.process_time() - cpu0
        selector.close()
        ser.close()
    finally:
        stats = sim.stop()
    useful = sum(map(len, frames))
    return Run(sent, duration, acked, len(frames), cpu, "completed", stats, useful)


def naive_grbl(commands: Sequence[str], *sim_args: str) -> Run:
    """Send-response: one line, wait for its `ok`/`error:`, the next."""
    sim = SimProcess("grbl", *sim_args)
    sent = acked = useful = 0
    try:
        ser = serial.Serial(sim.port, BAUD, timeout=3)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not ser.readline().startswith(b"Grbl"):
            pass
        ser.timeout = 10
        cpu0, t0 = time.process_time(), time.monotonic()
        for command in commands:
            data = command.encode("ascii") + b"\n"
            ser.write(data)
            sent += len(data)
            while True:
                line = ser.readline()
                if not line:
                    raise RuntimeError(f"naive grbl: no answer to {command!r}")
                if line.startswith((b"ok", b"error:")):
                    acked += 1
                    useful += len(data)
                    break
        duration, cpu = time.monotonic() - t0, time.process_time() - cpu0
        ser.close()
    finally:
        stats = sim.stop()
    return Run(sent, duration, acked, len(commands), cpu, "completed", stats, useful)


def file_rows(name: str) -> list[tuple[str, str, str]]:
    """fabnode and the reference, RUNS interleaved runs each (the order alternates), on one laser file."""
    from drivers.grbl.host import GrblHost

    raw = bench_gcode_file(name).read_text(encoding="utf-8", errors="replace").splitlines()
    kept = [c for c in map(grbl_keeps, raw) if c]
    limit = sum(len(c) + 1 for c in kept)
    ours, ref = Measured([], limit), Measured([], limit)
    for i in range(RUNS):
        for who in ((ours, ref) if i % 2 == 0 else (ref, ours)):
            if who is ours:
                who.runs.append(streamer_run("grbl", raw, GrblHost, *SIM_ARGS))
            else:
                who.runs.append(counting_reference(kept, *SIM_ARGS))
    naive = naive_grbl(kept[:NAIVE_LINES], *SIM_ARGS)
    as_written = sum(len(line.strip()) + 1 for line in raw if grbl_keeps(line))
    label = f"grbl {name} ({len(raw)} lines, `?` at 5 Hz)"
    goal = max(ref.efficiency, 0.98)
    drops = ", ".join(str(r.sim_stats.get("overflow_drops", "?")) for r in ours.runs)
    return [
        (f"{label}: efficiency vs the program's wire limit (goal >= {goal:.3f}: reference, 0.98)",
         ours.shown(), f"character counting {ref.shown()}; x{ours.efficiency / ref.efficiency:.3f} median, "
         f"x{ours.best / ref.best:.3f} best"),
        (f"{label}: wire use (own bytes / wire capacity)", f"{ours.wire_use:.3f}",
         f"character counting {ref.wire_use:.3f}; naive 1-in-flight {naive.efficiency:.3f} "
         f"({naive.lines_acked} lines, {naive.duration_s:.1f} s)"),
        (f"{label}: bytes of a job", f"{ours.runs[-1].bytes_sent} B",
         f"character counting {ref.runs[-1].bytes_sent} B (GRBL's own stripping: {limit} B; lines as written "
         f"{as_written} B)"),
        (f"{label}: overflow drops / host CPU per 10k lines",
         f"{drops} drops, {statistics.median(r.cpu_per_10k for r in ours.runs):.2f} s CPU",
         f"character counting {statistics.median(r.cpu_per_10k for r in ref.runs):.2f} s CPU, "
         f"naive {naive.cpu_per_10k:.2f} s CPU"),
    ]


def run() -> list[tuple[str, str, str]]:
    """The GRBL rows of `make bench`."""
    try:
        import drivers.grbl.host  # noqa: F401
    except ImportError as exc:
        return [("grbl_streaming", "skipped", f"not available: {exc}")]
    return [row for name in FILES for row in file_rows(name)]


if __name__ == "__main__":
    for row in run():
        print("  |  ".join(row))
