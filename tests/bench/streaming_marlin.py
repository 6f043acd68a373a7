"""Marlin streaming under Marlin's own cut rule, and at high latency (issue 11).

The simulator's `faithful_cuts` mode reads a line without N as Marlin 2.x does: after an error
the RX flush cuts the line that was arriving, and its tail runs as a command of its own if it
starts at one (`G1X10*72`). A run is exact when the commands the simulator ran are the file's,
in order, each once (the host's own M110/M155/M105 aside). After a refused line the host sends
one line at a time (drivers.marlin.caution); one row keeps it pipelining. Latency rows compare the
efficiency with the limit min(wire rate, window / round trip), round trip = twice the one-way
latency.
Environment: FABNODE_BENCH_CUT_LINES (benchy prefix per run, default 3000), FABNODE_BENCH_SEEDS
(seeds per noise level, default 10).
"""

from __future__ import annotations

import functools
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from drivers.gcode_text import compact_for_wire
from simulators.marlin.firmware import MarlinFirmware
from tests.bench.data import bench_gcode_file
from tests.bench.streaming import BAUD, RX_BUFFER, Run, SimProcess, streamer_run, wire_lines

CUT_LINES = int(os.environ.get("FABNODE_BENCH_CUT_LINES", "3000"))
SEEDS = int(os.environ.get("FABNODE_BENCH_SEEDS", "10"))
_HOST_OWN = ("M110", "M155", "M105")  # lines the host adds: not the file's


@dataclass
class CutRun:
    """One job against the cut-faithful simulator."""

    run: Run
    exact: bool
    why: str  # how the executed list differs, when it does


def _words(command: str) -> str:
    return " ".join(command.split())


def _is_host_own(command: str) -> bool:
    head = command.split(" ", 1)[0].upper()
    return any(head.startswith(code) and not head[len(code):].isdigit() for code in _HOST_OWN)


def _known(command: str) -> bool:
    """The simulator runs this command (it answers others `Unknown command`, running nothing)."""
    return _firmware().handler_for(command) is not None


@functools.cache
def _firmware() -> MarlinFirmware:
    return MarlinFirmware()


def _difference(expected: list[str], executed: list[str]) -> str:
    for i, (want, got) in enumerate(zip(expected, executed, strict=False)):
        if want != got:
            return f"first difference at command {i}: expected {want!r}, ran {got!r}"
    return f"ran {len(executed)} of {len(expected)} commands"


def cut_run(raw: list[str], noise: float, seed: int, latency_ms: float = 1.0,
            advanced_ok: bool = False, tx_buffer: int | None = None, reply_noise: float = 0.0,
            **host_options: float) -> CutRun:
    """Stream `raw` to a cut-faithful simulator; compare what it ran with the file."""
    from drivers.marlin.host import MarlinHost

    with tempfile.TemporaryDirectory() as tmp:
        record = Path(tmp) / "executed.txt"
        options = {"baud": BAUD, "latency_s": latency_ms / 1000, "rx_buffer": RX_BUFFER, "time_scale": 0,
                   "noise": noise, "seed": seed, "faithful_cuts": True, "record": str(record),
                   "advanced_ok": advanced_ok, "tx_buffer": tx_buffer,
                   "reply_noise": reply_noise}  # fmt: skip
        cmd = [sys.executable, "-m", "tests.bench.marlin_sim_process", json.dumps(options)]
        run = streamer_run("marlin", raw, lambda: MarlinHost(**host_options),  # type: ignore[arg-type]
                           sim=SimProcess("marlin", cmd=cmd), timeout_s=300)
        # the simulator records unknown commands too (the tail `72` of a cut line): they run nothing
        recorded = map(_words, record.read_text().splitlines())
        executed = [c for c in recorded if not _is_host_own(c) and _known(c)]
    expected = [_words(c) for c in map(compact_for_wire, raw) if c and not _is_host_own(c) and _known(c)]
    exact = executed == expected and run.status == "completed"
    return CutRun(run, exact, "" if exact else _difference(expected, executed))


def _summary(runs: list[CutRun]) -> tuple[str, str]:
    exact = sum(r.exact for r in runs)
    drops = sum(int(str(r.run.sim_stats.get("overflow_drops", 0))) for r in runs)
    effs = [r.run.efficiency for r in runs]
    goods = [r.run.goodput for r in runs]
    errors = sum(int(str(r.run.sim_stats.get("resends_requested", 0))) for r in runs)
    tails = sum(int(str(r.run.sim_stats.get("unknown_commands", 0))) for r in runs)
    figure = (f"exact {exact}/{len(runs)}, {drops} overflow drops, efficiency min {min(effs):.3f} "
              f"mean {sum(effs) / len(effs):.3f}, goodput mean {sum(goods) / len(goods):.3f}")
    why = "; ".join(f"seed {i}: {r.why}" for i, r in enumerate(runs) if not r.exact)
    detail = f"{errors} resend requests, {tails} unknown-command tails answered" + (f"; {why}" if why else "")
    return figure, detail


def marlin_cut_rows() -> list[tuple[str, str, str]]:
    """Exactness, overflow and efficiency on the cut-faithful simulator, clean and at 1% and 5% noise."""
    raw, _ = wire_lines(bench_gcode_file("prusaslicer-benchy.gcode"), CUT_LINES, paren_comments=False)
    rows: list[tuple[str, str, str]] = []
    # TX_BUFFER_SIZE: None, writes that never block (the flush follows the bad line at once, as on a
    # 32-bit board's buffered serial); 0, an AVR's default (the flush waits for the `Error:` line).
    # The host's default sends one line at a time after a refusal (drivers.marlin.caution); the
    # last row keeps pipelining, for the trade between exact and fast.
    cases = ((0.0, 0.95, 2, None, None), (0.01, 0.90, SEEDS, None, None), (0.05, None, SEEDS, None, None),
             (0.01, 0.90, SEEDS, 0, None), (0.01, 0.90, max(2, SEEDS // 2), None, 0))  # fmt: skip
    for noise, goal, seeds, tx_buffer, single_line in cases:
        options = {} if single_line is None else {"single_line_after_error": single_line}
        runs = [cut_run(raw, noise, seed, tx_buffer=tx_buffer, **options) for seed in range(seeds)]
        figure, detail = _summary(runs)
        target = "goal exact all, 0 drops" + (f", efficiency >= {goal:.2f}" if goal else "")
        uart = "TX buffered" if tx_buffer is None else f"TX_BUFFER_SIZE {tx_buffer}"
        host = "" if single_line is None else ", host pipelining after errors"
        label = (f"marlin cut-faithful ({uart}{host}), benchy {CUT_LINES} lines, noise {noise:.0%}, "
                 f"{seeds} seeds ({target})")
        rows.append((label, figure, detail))
    return rows


def marlin_latency_rows(advanced_ok: bool = False) -> list[tuple[str, str, str]]:
    """Efficiency at 5 ms and 20 ms one-way latency against min(wire, window / round trip); with
    advanced_ok the firmware reports ADVANCED_OK's free counts (`ok N<n> P<p> B<b>`)."""
    from drivers.marlin.host import MarlinHost

    window = MarlinHost().window_bytes
    raw, _ = wire_lines(bench_gcode_file("prusaslicer-benchy.gcode"), CUT_LINES, paren_comments=False)
    rows: list[tuple[str, str, str]] = []
    for latency_ms in (5.0, 20.0):
        limit = min(1.0, window / (2 * latency_ms / 1000) / (BAUD / 10))
        result = cut_run(raw, 0.0, 0, latency_ms=latency_ms, advanced_ok=advanced_ok)
        ratio = result.run.efficiency / limit
        ok = ", ADVANCED_OK" if advanced_ok else ""
        label = (f"marlin {latency_ms:.0f} ms one-way latency{ok}, {window}-byte window "
                 "(goal >= 0.90 of limit)")
        rows.append((label,
                     f"{ratio:.3f} of the limit (efficiency {result.run.efficiency:.3f}, limit {limit:.3f}; "
                     f"exact {result.exact})", f"goodput {result.run.goodput:.3f}"))
    return rows


def run() -> list[tuple[str, str, str]]:
    """`python -m tests.bench streaming_marlin`: the cut-faithful rows, then latency without and with
    ADVANCED_OK."""
    return [*marlin_cut_rows(), *marlin_latency_rows(), *marlin_latency_rows(advanced_ok=True)]
