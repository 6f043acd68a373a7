"""Benchmark of G-code analysis: lines per CPU-second beside the exact line-by-line path and bare loops.

References measured in the same run: the exact path (`analyze_file(..., reference=True)`, the analysis
before the bulk reading, whose figures the bulk path must equal), `for line in f: pass` and
`for line in f: line.split()`. Peers measured elsewhere on this machine (issue 11): Printrun's Cython
gcoder 188k lines/s, gcodeparser 172k. Also the memory of preparing the file as the daemon does
(fabnode.node.prepare.preflight, then every line streamed from its JobFile) in a fresh process: peak
RSS over the RSS before; and the accuracy of the estimate against the slicer's own figures in each file.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from fabnode.gcode.analysis import analyze_file
from tests.bench.data import bench_gcode_file
from tests.data import gcode_names

BIG = "prusaslicer-benchy.gcode"
_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


REPO = Path(__file__).resolve().parents[2]
# A fresh daemon-like process: its modules imported (numpy too), then one file prepared and streamed.
_MEMORY = """
import sys
from pathlib import Path
import fabnode.cli, fabnode.node.loop, fabnode.node.wiring
from fabnode.machine.profile import MachineProfile
from fabnode.node.prepare import preflight
def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith(key))
idle = status("VmRSS")
prepared = preflight(Path(sys.argv[1]), MachineProfile())
after_preflight = status("VmHWM")
source = prepared.source
for i in range(len(source)):
    source[i]
print(idle, after_preflight, status("VmHWM"), status("VmRSS"))
"""


def _best(fn: Callable[[], object], repeat: int = 3) -> float:
    """The least CPU time (time.process_time) of `repeat` runs: the other helpers' load counts least."""
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def _bare(path: Path) -> None:
    with path.open() as f:
        for _line in f:
            pass


def _split(path: Path) -> None:
    with path.open() as f:
        for line in f:
            line.split()


def _slicer(path: Path) -> tuple[float, float] | None:
    tail = path.read_text(errors="replace")[-60_000:]
    fil = re.search(r"^; filament used \[mm\] = ([\d.]+)", tail, re.M)
    est = re.search(r"^; estimated printing time \(normal mode\) = (.+)$", tail, re.M)
    if not (fil and est):
        return None
    seconds = sum(int(n) * _UNITS[u] for n, u in re.findall(r"(\d+)([dhms])", est.group(1)))
    return float(fil.group(1)), float(seconds)


def _speed_rows(path: Path) -> list[tuple[str, str, str]]:
    lines = sum(1 for _ in path.open())
    bare = _best(lambda: _bare(path))
    split = _best(lambda: _split(path))
    exact = _best(lambda: analyze_file(path, reference=True), repeat=2)
    ours = _best(lambda: analyze_file(path), repeat=5)
    same = analyze_file(path).to_json() == analyze_file(path, reference=True).to_json()
    return [
        (f"analyze {path.name}", f"{lines / ours:,.0f} lines/CPU-s ({ours:.3f} s)",
         f"{lines:,} lines; goal >= 900,000; peers gcoder 188k, gcodeparser 172k (issue 11)"),
        ("  vs the exact path", f"x{exact / ours:.1f} faster",
         f"{lines / exact:,.0f} lines/CPU-s ({exact:.2f} s); figures equal: {same}"),
        ("  vs bare loop", f"x{ours / bare:.1f} the time",
         f"for line in f: pass, {lines / bare:,.0f} lines/CPU-s"),
        ("  vs split loop", f"x{ours / split:.1f} the time",
         f"line.split(), {lines / split:,.0f} lines/CPU-s"),
    ]  # fmt: skip


def _memory_rows(path: Path) -> list[tuple[str, str, str]]:
    out = subprocess.run([sys.executable, "-c", _MEMORY, str(path)], cwd=REPO, capture_output=True,
                         text=True, check=True, timeout=600).stdout.split()  # fmt: skip
    idle, preflight_peak, peak, rss = (float(v) for v in out)
    size = path.stat().st_size / 2**20
    return [
        (f"prepare + stream {path.name} ({size:.1f} MiB)", f"peak RSS +{peak - idle:.1f} MiB",
         f"idle {idle:.1f} MiB (numpy imported); after preflight +{preflight_peak - idle:.1f}, "
         f"held after streaming +{rss - idle:.1f}; goal: within 5 MB of idle"),
    ]


def _accuracy_rows() -> list[tuple[str, str, str]]:
    rows = []
    for path in (bench_gcode_file(n) for n in gcode_names() if n.startswith("prusaslicer-")):
        figures = _slicer(path)
        if figures is None:
            continue
        a = analyze_file(path)
        rows.append(
            (
                f"estimate {path.name}",
                f"{a.estimated_s:.0f} s, {a.filament_mm:.1f} mm",
                f"slicer {figures[1]:.0f} s ({a.estimated_s / figures[1]:.3f}x), "
                f"{figures[0]:.1f} mm ({a.filament_mm / figures[0]:.4f}x)",
            )
        )
    return rows


def run() -> list[tuple[str, str, str]]:
    """Rows (benchmark, result, reference/ratio)."""
    path = bench_gcode_file(BIG)
    return _speed_rows(path) + _memory_rows(path) + _accuracy_rows()
