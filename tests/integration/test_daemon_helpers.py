"""Helpers, not tests: a real `fabnode run --simulate` daemon in a subprocess, driven like a technician would.

`Node` starts the daemon on a temporary state dir and waits (with a deadline) until its control socket
answers; `node.cli(...)` runs a `fabnode` verb in a subprocess; `node.status()` asks the socket directly
(cheap enough to poll); `node.db()` reads the usage log the way a report would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from drivers.gcode_text import compact_for_wire
from fabnode.node.control import ControlError, request
from fabnode.paths import control_socket_path, secret_file_path, usage_db_path
from fabnode.records import members as access
from fabnode.records.usage import UsageLog
from tests.conftest import gcode_path

REPO = Path(__file__).resolve().parents[2]
# `python -m fabnode`, registering the daemon's verbs if fabnode.cli does not list them yet.
BOOT = (
    "import sys\n"
    "from fabnode.cli import app, node, run\n"
    "names = {c.name for c in app.registered_commands}\n"
    "if 'run' not in names: run.register(app)\n"
    "if 'status' not in names: node.register(app)\n"
    "sys.argv[0] = 'fabnode'\n"
    "app()\n"
)
MEMBER_UID, TECH_UID, STRANGER_UID = "04:A2:2B:1C", "04:7E:11:22", "04:00:00:99"
HOST_COMMANDS = ("M110", "M155", "M105")  # what the host itself sends besides the job's lines

T = TypeVar("T")

CONFIG_TEMPLATE = """\
[node]
lab = "test-lab"
machine = "{machine}"

[serial]
port = "sim"

[machine]
kind = "printer"
firmware = "marlin"

[session]
idle_timeout_s = {idle}
idle_warning_s = {warning}
cooldown_hotend_below_c = 50.0
cooldown_max_s = 60.0
checkpoint_every_s = {checkpoint}

[gpio]
backend = "sim"

[reader]
backend = "sim"
"""


def fabnode_cmd(*args: str) -> list[str]:
    """The command line of `fabnode ARGS`."""
    return [sys.executable, "-c", BOOT, *args]


def fabnode(*args: str, timeout: float = 30.0, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    """Run one `fabnode` verb to its end."""
    return subprocess.run(fabnode_cmd(*args), capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env=env, check=False)  # fmt: skip


def wait_until(check: Callable[[], T], timeout: float, what: str, every: float = 0.05) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: T = check()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what} (last: {last!r})")
        time.sleep(every)  # polling a condition in another process: there is nothing to wait on
        last = check()
    return last


def write_config(folder: Path, *, idle: float = 900.0, warning: float = 60.0, checkpoint: float = 1.0,
                 machine: str = "test-printer") -> Path:
    """A printer config with every part simulated."""
    path = folder / "node.toml"
    text = CONFIG_TEMPLATE.format(machine=machine, idle=idle, warning=warning, checkpoint=checkpoint)
    path.write_text(text, encoding="utf-8")
    return path


def gcode_prefix(folder: Path, lines: int, name: str = "part.gcode") -> Path:
    """The first `lines` lines of the real cubhelix print, as a file to print."""
    head = gcode_path("prusaslicer-cubhelix.gcode").read_text(encoding="utf-8").splitlines()[:lines]
    path = folder / name
    path.write_text("\n".join(head) + "\n", encoding="utf-8")
    return path


def wire_commands(path: Path) -> list[str]:
    """A file's commands as the firmware records them (comments gone, blanks collapsed)."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        text = compact_for_wire(line)  # the hosts send lines compact
        if text:
            out.append(" ".join(text.split()))
    return out


class Node:
    """A daemon subprocess on its own state dir."""

    def __init__(self, state_dir: Path, config: Path | None = None, sim_speed: float = 100.0,
                 extra: tuple[str, ...] = ()) -> None:
        self.state_dir = state_dir
        self.extra = extra
        self.config = config
        self.sim_speed = sim_speed
        self.proc: subprocess.Popen[str] | None = None
        self.log_path = state_dir.parent / f"{state_dir.name}-daemon.log"

    def start(self, timeout: float = 15.0) -> Node:
        """Start `fabnode run --simulate` and wait until the control socket answers."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        args = ["run", "--simulate", "--state-dir", str(self.state_dir), "--sim-speed", str(self.sim_speed)]
        if self.config is not None:
            args += ["--config", str(self.config)]
        args += self.extra
        log = self.log_path.open("a", encoding="utf-8")
        self.proc = subprocess.Popen(fabnode_cmd(*args), stdout=log, stderr=log, text=True, cwd=REPO)
        log.close()
        wait_until(self._answers, timeout, f"the daemon answers on its socket; log:\n{self.output()}")
        return self

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"the daemon exited with {self.proc.returncode}:\n{self.output()}")
        try:
            return bool(request(control_socket_path(self.state_dir), {"cmd": "status"}, timeout=2.0)["ok"])
        except (ControlError, OSError):
            return False

    def output(self) -> str:
        """What the daemon logged so far."""
        return self.log_path.read_text(encoding="utf-8") if self.log_path.exists() else ""

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, wait for the exit code; SIGKILL if it does not stop, so no daemon outlives its test."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise

    def kill(self) -> None:
        """SIGKILL: a power cut as far as the daemon can tell."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    # --- driving it -------------------------------------------------------------------------------

    def cli(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """`fabnode VERB ... --state-dir DIR`."""
        return fabnode(*args, "--state-dir", str(self.state_dir), timeout=timeout)

    def ask(self, message: dict[str, Any]) -> dict[str, Any]:
        """One request on the control socket."""
        return request(control_socket_path(self.state_dir), message, timeout=10.0)

    def status(self) -> dict[str, Any]:
        """`fabnode status --json`, straight from the socket."""
        reply = self.ask({"cmd": "status"})
        assert reply["ok"], reply
        return dict(reply["status"])

    def tap(self, uid: str) -> dict[str, Any]:
        """A badge tap on the simulated reader (the socket's `badge` request)."""
        return self.ask({"cmd": "badge", "uid": uid})

    def wait_status(self, check: Callable[[dict[str, Any]], bool], timeout: float, what: str
                    ) -> dict[str, Any]:
        """Poll the status until `check(status)`; a failure shows the last status seen."""
        seen: list[dict[str, Any]] = []

        def matched() -> dict[str, Any] | None:
            seen[:] = [self.status()]
            return seen[0] if check(seen[0]) else None

        try:
            return wait_until(matched, timeout, what)
        except AssertionError as failure:
            raise AssertionError(f"{failure}; last status: {seen[0] if seen else None}") from None

    def executed(self) -> list[str]:
        """The simulated firmware's executed commands, the host's own (numbering, reports) aside."""
        path = self.state_dir / "sim-firmware.log"
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        return [c for c in lines if not c.startswith(HOST_COMMANDS)]

    # --- the usage log ----------------------------------------------------------------------------

    def add_members(self, machine: str = "sim-printer") -> None:
        """Alice (trained on `machine`) and Tom the technician, as `fabnode members` would add them."""
        secret = access.load_secret(secret_file_path(self.state_dir))
        now = datetime.now(UTC)
        with UsageLog.open(usage_db_path(self.state_dir)) as log:
            access.add_member(log.db, secret, "Alice", MEMBER_UID, now=now)
            access.grant_training(log.db, "Alice", machine, now=now)
            access.add_member(log.db, secret, "Tom", TECH_UID, role="technician", now=now)

    def rows(self, sql: str, *params: object) -> list[dict[str, Any]]:
        """Rows of a query on the usage log (a separate read-only connection)."""
        uri = f"file:{usage_db_path(self.state_dir)}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=10)) as conn:
            conn.row_factory = sqlite3.Row
            return [dict(r) for r in conn.execute(sql, params).fetchall()]
