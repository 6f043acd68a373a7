"""Streaming efficiency: the Streamer with the real host protocols against a naive one-line-in-flight host.

efficiency = (bytes the host wrote / (baud / 10)) / the job's wall time: 1.0 is a wire never idle.
Each run starts its own simulator as a subprocess (`fabnode sim ...`, so it does not share our GIL)
at 115200 baud, 1 ms one-way latency, 128-byte RX buffer, time_scale 0 (moves take no time: the
wire is the only limit). The host's CPU is time.process_time() of this process (the sim is outside).
Environment: FABNODE_BENCH_LINES (Marlin prefix of prusaslicer-benchy.gcode, default 10000 lines),
FABNODE_BENCH_NAIVE_LINES (the naive host's prefix of the same file, default 2000 lines).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import serial

from drivers.gcode_text import strip_for_wire
from drivers.serial_link import SerialLink
from drivers.streamer import JobEnded, Progress, Streamer
from tests.bench.data import bench_gcode_file

REPO = Path(__file__).resolve().parents[2]
BAUD = 115200
LATENCY_MS = 1.0
RX_BUFFER = 128
MARLIN_LINES = int(os.environ.get("FABNODE_BENCH_LINES", "10000"))
# The naive host is ~3x slower: it runs on a shorter prefix of the same file (a rate per byte).
NAIVE_LINES = int(os.environ.get("FABNODE_BENCH_NAIVE_LINES", "2000"))
FAULT_LINES, FAULT_AT = 3000, 500  # the one-fault run: a benchy prefix, the N of the refused line


@dataclass
class Run:
    """One measured job."""

    bytes_sent: int
    duration_s: float
    lines_acked: int
    lines_total: int
    cpu_s: float
    status: str
    sim_stats: dict[str, object]
    useful_bytes: int = 0  # bytes of acknowledged lines (resent copies and the host's own lines aside)

    @property
    def efficiency(self) -> float:
        return self.bytes_sent / (BAUD / 10) / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def goodput(self) -> float:
        return self.useful_bytes / (BAUD / 10) / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def cpu_per_10k(self) -> float:
        return self.cpu_s * 10_000 / max(self.lines_acked, 1)


class SimProcess:
    """`fabnode sim <firmware>` in a subprocess: its pty path on the first line, stats on SIGTERM."""

    def __init__(self, firmware: str, *extra: str, cmd: list[str] | None = None) -> None:
        cmd = cmd or [sys.executable, "-m", "fabnode", "sim", firmware, "--baud", str(BAUD), "--latency-ms",
                      str(LATENCY_MS), "--rx-buffer", str(RX_BUFFER), "--time-scale", "0", *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO)
        assert self.proc.stdout is not None
        self.port = self.proc.stdout.readline().strip()
        if not self.port:
            self.proc.kill()
            raise RuntimeError(f"{' '.join(cmd)} printed no port")

    def stop(self) -> dict[str, object]:
        """Stop the simulator and return its counters."""
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=10)
        for line in out.splitlines():
            if line.startswith("stats: "):
                return dict(json.loads(line[len("stats: "):]))
        return {}


def wire_lines(path: Path, limit: int | None, paren_comments: bool) -> tuple[list[str], list[str]]:
    """The file's first `limit` lines, and the commands of them that go on the wire."""
    raw = path.read_text(encoding="utf-8", errors="replace").splitlines()[:limit]
    return raw, [c for c in (strip_for_wire(line, paren_comments=paren_comments) for line in raw) if c]


def streamer_run(firmware: str, raw: Sequence[str], make_protocol: Callable[[], object],
                 *sim_args: str, sim: SimProcess | None = None, timeout_s: float = 600) -> Run:
    """Stream through drivers.streamer.Streamer with the real host protocol."""
    sim = sim or SimProcess(firmware, *sim_args)
    done = threading.Event()
    ended: list[JobEnded] = []
    progress: list[Progress] = []

    def on_event(event: object) -> None:
        if isinstance(event, Progress):
            progress[:] = [event]
        elif isinstance(event, JobEnded):
            ended.append(event)
            done.set()

    try:
        streamer = Streamer(SerialLink(sim.port, BAUD), make_protocol(), on_event)  # type: ignore[arg-type]
        streamer.wait_ready(3.0)
        cpu0 = time.process_time()
        streamer.start_job(raw, name="bench")
        if not done.wait(timeout_s):
            streamer.close()
            raise RuntimeError(f"{firmware}: the job did not end within {timeout_s:.0f} s")
        cpu = time.process_time() - cpu0
        streamer.close()
    finally:
        stats = sim.stop()
    end = ended[0]
    resends_answered[:] = [end.resends]
    total = sum(1 for line in raw if strip_for_wire(line, paren_comments=False))
    useful = progress[-1].bytes_acked if progress else 0
    return Run(end.bytes_sent, end.duration_s, end.lines_acked, total, cpu, end.status, stats, useful)


resends_answered: list[int] = []  # the last streamer_run's JobEnded.resends


def _checksum(frame: bytes) -> int:
    value = 0
    for byte in frame:
        value ^= byte
    return value


def _open_greeted(port: str, greeting: bytes) -> serial.Serial:
    """Open like a simple script does and wait (bounded) for the board's greeting."""
    ser = serial.Serial(port, BAUD, timeout=3)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and not ser.readline().startswith(greeting):
        pass
    ser.timeout = 10
    return ser


def naive_marlin(commands: Sequence[str], *sim_args: str) -> Run:
    """One numbered line in flight: send, wait for `ok`, resend from `Resend: N` when asked."""
    sim = SimProcess("marlin", *sim_args)
    sent = acked = useful = 0
    try:
        ser = _open_greeted(sim.port, b"start")
        cpu0, t0 = time.process_time(), time.monotonic()
        frames = [b"M110 N0", *(c.encode("ascii") for c in commands)]
        number = 0
        while number < len(frames):
            frame = b"N%d %s" % (number, frames[number])
            data = frame + b"*%d\n" % _checksum(frame)
            ser.write(data)
            sent += len(data)
            resend: int | None = None
            while True:
                line = ser.readline()
                if not line:
                    raise RuntimeError(f"naive marlin: no answer to N{number}")
                if line.startswith((b"Resend:", b"rs ")):
                    resend = int(line.split()[-1].split(b":")[-1])
                elif line.startswith(b"ok"):
                    break
            if resend is None:
                acked += number > 0
                useful += len(data) if number > 0 else 0
                number += 1
            else:
                number = resend
        duration, cpu = time.monotonic() - t0, time.process_time() - cpu0
        ser.close()
    finally:
        stats = sim.stop()
    return Run(sent, duration, acked, len(commands), cpu, "completed", stats, useful)


def _rows(label: str, ours: Run, naive: Run, goal: float) -> list[tuple[str, str, str]]:
    ratio = ours.efficiency / naive.efficiency if naive.efficiency else float("inf")
    return [
        (f"{label}: efficiency (goal >= {goal:.2f})",
         f"{ours.efficiency:.3f} ({ours.status}, {ours.lines_acked}/{ours.lines_total} lines, "
         f"{ours.bytes_sent} B in {ours.duration_s:.1f} s)",
         f"naive 1-in-flight {naive.efficiency:.3f} ({naive.lines_acked} lines, {naive.duration_s:.1f} s); "
         f"x{ratio:.2f}"),
        (f"{label}: goodput (acknowledged line bytes / wire capacity)",
         f"{ours.goodput:.3f}", f"naive {naive.goodput:.3f}"),
        (f"{label}: overflow drops / host CPU per 10k lines",
         f"{ours.sim_stats.get('overflow_drops', '?')} drops, {ours.cpu_per_10k:.2f} s CPU",
         f"naive {naive.sim_stats.get('overflow_drops', '?')} drops, {naive.cpu_per_10k:.2f} s CPU"),
    ]


def marlin_rows() -> list[tuple[str, str, str]]:
    """Marlin on a benchy prefix, without and with 1% line noise."""
    from drivers.marlin.host import MarlinHost

    benchy = bench_gcode_file("prusaslicer-benchy.gcode")
    raw, commands = wire_lines(benchy, MARLIN_LINES, paren_comments=False)
    rows: list[tuple[str, str, str]] = []
    for noise, goal in (("0", 0.90), ("0.01", 0.80)):
        args = ("--noise", noise, "--seed", "7")
        ours = streamer_run("marlin", raw, MarlinHost, *args)
        naive = naive_marlin(commands[:NAIVE_LINES], *args)
        label = f"marlin benchy {MARLIN_LINES} lines, noise {float(noise):.0%}"
        rows += _rows(label, ours, naive, goal)
        rows.append((f"{label}: resends", f"{ours.sim_stats.get('resends_requested', '?')} requested "
                     f"({ours.sim_stats.get('corrupted_lines', '?')} lines corrupted)",
                     f"naive {naive.sim_stats.get('resends_requested', '?')} requested"))
    return rows


def marlin_fault_rows() -> list[tuple[str, str, str]]:
    """Resends for ONE injected checksum error on a Marlin that keeps its RX buffer after an error.

    Every line already in that buffer is refused too, each with its own `Resend:`; a host that
    tells copies from new requests answers one, and the firmware asks at most once per line that
    was in flight. Issue 9 measured 222-735 resends per fault against firmware of this kind.
    """
    from drivers.marlin.host import MarlinHost

    raw, _ = wire_lines(bench_gcode_file("prusaslicer-benchy.gcode"), FAULT_LINES, paren_comments=False)
    options = {"baud": BAUD, "latency_s": LATENCY_MS / 1000, "rx_buffer": RX_BUFFER, "time_scale": 0,
               "flush_on_error": False, "checksum_error_at_line": FAULT_AT}  # fmt: skip
    cmd = [sys.executable, "-m", "tests.bench.marlin_sim_process", json.dumps(options)]
    ours = streamer_run("marlin", raw, MarlinHost, sim=SimProcess("marlin", cmd=cmd))
    stats = ours.sim_stats
    answered = resends_answered[0] if resends_answered else "?"
    label = f"marlin one fault at N{FAULT_AT}, no RX flush after an error: resends (goal <= lines in flight)"
    return [(label,
             f"{stats.get('resends_requested', '?')} requested by the firmware, {answered} answered "
             f"({ours.status}, {ours.lines_acked}/{ours.lines_total} lines)",
             f"{stats.get('line_number_errors', '?')} lines behind the bad one refused (in flight)")]


def marlin_virtual_printer_rows() -> list[tuple[str, str, str]]:
    """Resends for ONE fault on OctoPrint's virtual printer (simulator option `virtual_printer`).

    Its `resend_with_timeout` (one of its default simulated errors) asks for line n, counts n taken
    and ignores the next line, so the host's resend of n arrives as a duplicate. Issue 9: before
    the host attributed each request to the line it answers, that one fault grew into a storm.
    """
    from drivers.marlin.host import MarlinHost

    raw, _ = wire_lines(bench_gcode_file("prusaslicer-benchy.gcode"), FAULT_LINES, paren_comments=False)
    options = {"baud": BAUD, "latency_s": LATENCY_MS / 1000, "rx_buffer": RX_BUFFER, "time_scale": 0,
               "virtual_printer": True, "virtual_errors": [[FAULT_AT, "resend_with_timeout"]]}  # fmt: skip
    cmd = [sys.executable, "-m", "tests.bench.marlin_sim_process", json.dumps(options)]
    ours = streamer_run("marlin", raw, MarlinHost, sim=SimProcess("marlin", cmd=cmd))
    stats = ours.sim_stats
    answered = resends_answered[0] if resends_answered else "?"
    label = f"marlin one fault at N{FAULT_AT}, OctoPrint's virtual printer: resends (goal <= lines in flight)"
    return [(label,
             f"{stats.get('resends_requested', '?')} requested by the firmware, {answered} answered "
             f"({ours.status}, {ours.lines_acked}/{ours.lines_total} lines)",
             "before the fix (issue 9): 1496 requested, 517 answered, failed at 695/2656 lines")]


def run() -> list[tuple[str, str, str]]:
    """All streaming rows; a firmware whose host protocol is missing says so instead."""
    rows: list[tuple[str, str, str]] = []
    from tests.bench.streaming_marlin import marlin_cut_rows, marlin_latency_rows

    for part in (marlin_rows, marlin_cut_rows, marlin_latency_rows, marlin_fault_rows,
                 marlin_virtual_printer_rows):
        try:
            rows += part()
        except ImportError as exc:
            rows.append((part.__name__, "skipped", f"not available: {exc}"))
    return rows


if __name__ == "__main__":
    for row in run():
        print("  |  ".join(row))
