"""Helpers, not tests: run a job through the Streamer or the `fabnode stream` CLI against a simulator."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from drivers.gcode_text import compact_for_wire, strip_for_wire
from drivers.serial_link import SerialLink
from drivers.streamer import JobEnded, Streamer

REPO = Path(__file__).resolve().parents[2]
SimFactory = Callable[..., Any]


def sim_factory(simulator: type, baud: int) -> Iterator[SimFactory]:
    """Body of a `start_sim` fixture: make(**options) starts a simulator; all are stopped afterwards."""
    sims: list[Any] = []

    def make(**kw: object) -> Any:
        kw.setdefault("time_scale", 0)
        kw.setdefault("baud", baud)
        sim = simulator(**kw).start()
        sims.append(sim)
        return sim

    try:
        yield make
    finally:
        for sim in sims:
            sim.stop()


class Recorder:
    """Collects what the streamer reports; tests wait on it instead of sleeping."""

    def __init__(self) -> None:
        self.events: list[object] = []
        self.cond = threading.Condition()

    def __call__(self, event: object) -> None:
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def of(self, kind: type) -> list:
        with self.cond:
            return [e for e in self.events if isinstance(e, kind)]

    def wait_for(self, kind: type, timeout: float) -> object:
        with self.cond:
            ok = self.cond.wait_for(lambda: any(isinstance(e, kind) for e in self.events), timeout)
        assert ok, f"no {kind.__name__} within {timeout} s; last events: {self.events[-5:]}"
        return self.of(kind)[0]


def wire_commands(lines: Sequence[str], paren_comments: bool = False) -> list[str]:
    """The commands of these file lines as a firmware records them (comments gone, blanks collapsed)."""
    out = []
    for line in lines:
        text = strip_for_wire(line, paren_comments=paren_comments)
        if text:
            out.append(" ".join(text.split()))
    return out


HOST_OWN = ("M110", "M155", "M105")  # Marlin host: line numbering, temperature reports, pokes


def job_commands(commands: Sequence[str]) -> list[str]:
    """Commands other than those the Marlin host adds on its own (apply to both sides of a comparison).

    Digits alone are no command: when Marlin refuses a line it flushes its RX buffer, and the tail of
    a line that was half in (its checksum, `46`) arrives after the flush as an unnumbered line that
    Marlin answers `Unknown command` (as a real board does); the host resends the whole line.
    """
    compact = (compact_for_wire(c) for c in commands)  # the Marlin host sends lines compact
    return [c for c in compact if not c.startswith(HOST_OWN) and not c.isdigit()]


def run_job(port: str, baud: int, protocol: object, lines: Sequence[str], timeout: float = 30.0
            ) -> tuple[JobEnded, Recorder]:
    """Greet, stream `lines` to the end, close; returns the JobEnded and everything reported."""
    rec = Recorder()
    streamer = Streamer(SerialLink(port, baud), protocol, rec)  # type: ignore[arg-type]
    try:
        assert streamer.wait_ready(5.0), f"no greeting from the simulator on {port}"
        streamer.start_job(lines, name="test")
        ended = rec.wait_for(JobEnded, timeout)
    finally:
        streamer.close()
    assert isinstance(ended, JobEnded)
    return ended, rec


def fabnode(*args: str, timeout: float = 60.0, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m fabnode ARGS` to its end."""
    return subprocess.run([sys.executable, "-m", "fabnode", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, input=stdin, check=False)


def json_summary(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    """The one JSON object `fabnode stream --json` prints on stdout."""
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one JSON line, got stdout={result.stdout!r} stderr={result.stderr!r}"
    return dict(json.loads(lines[0]))


def write_prefix(source: Path, count: int, folder: Path) -> tuple[Path, list[str]]:
    """The first `count` lines of a real file, as a file of its own."""
    lines = source.read_text(encoding="utf-8", errors="replace").splitlines()[:count]
    path = folder / f"{source.stem}-{count}.gcode"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, lines
