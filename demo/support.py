"""The demo's plumbing: numbered narration, `fabnode` commands run as a user would, background services
(node daemons, the collector, a local mosquitto) each in its own process group, stopped on every exit.

Nothing here knows the scripted day; demo.main tells the story with these pieces.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from fabnode.mosquitto import connack_probe, free_port

FABNODE = (sys.executable, "-m", "fabnode")
STOP_WAIT_S = 10.0


class DemoError(RuntimeError):
    """The day did not go as scripted; the message says what was expected and what happened."""


class Narrator:
    """Prints numbered steps, the commands they run and what came back, indented under each step."""

    def __init__(self, out: TextIO = sys.stdout, cwd: Path | None = None) -> None:
        self.out = out
        self.cwd = (cwd or Path.cwd()).resolve()
        self.number = 0
        self.steps: list[str] = []

    def step(self, sentence: str) -> None:
        """Start step N with a sentence a newcomer understands."""
        self.number += 1
        self.steps.append(sentence)
        self._print(f"\n{self.number}. {sentence}")

    def command(self, argv: Sequence[str]) -> None:
        """Show a command as the user would type it."""
        self._print(f"   $ {self.shown(argv)}")

    def say(self, text: str, indent: str = "   ") -> None:
        """A line (or lines) of explanation or output under the current step."""
        for line in text.splitlines() or [""]:
            self._print(f"{indent}{line}".rstrip())

    def shown(self, argv: Sequence[str]) -> str:
        """`python -m fabnode` as `fabnode`, paths under the working directory relative to it."""
        args = list(argv)
        if tuple(args[:3]) == FABNODE:
            args = ["fabnode", *args[3:]]
        elif args[:2] == [sys.executable, "-m"]:
            args = ["python", "-m", *args[2:]]
        return shlex.join(self.relative(a) for a in args)

    def relative(self, text: str) -> str:
        """An absolute path under the working directory, made relative; anything else as it is."""
        prefix = f"{self.cwd}{os.sep}"
        return text.replace(prefix, "") if prefix in text else text

    def _print(self, text: str) -> None:
        print(text, file=self.out, flush=True)


class Runner:
    """Runs `fabnode` verbs in subprocesses with the demo's environment, showing each command."""

    def __init__(self, narrator: Narrator, env: dict[str, str], timeout_s: float = 60.0) -> None:
        self.narrator = narrator
        self.env = env
        self.timeout_s = timeout_s

    def fabnode(self, *args: str, ok: bool | None = True, quiet: bool = False, show: bool = True
                ) -> subprocess.CompletedProcess[str]:
        """Run `fabnode ARGS`; ok=True/False: the exit code must be 0 / non-zero (None: either)."""
        return self.run([*FABNODE, *args], ok=ok, quiet=quiet, show=show)

    def run(self, argv: Sequence[str], ok: bool | None = True, quiet: bool = False, show: bool = True
            ) -> subprocess.CompletedProcess[str]:
        """Run a command; `quiet` keeps its output off the screen, `show=False` the command too."""
        if show:
            self.narrator.command(argv)
        try:
            done = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=self.timeout_s,
                                  stdin=subprocess.DEVNULL)  # fmt: skip
        except subprocess.TimeoutExpired:
            raise DemoError(f"`{self.narrator.shown(argv)}` did not finish in {self.timeout_s:g} s") from None
        if not quiet:
            self.narrator.say((done.stdout + done.stderr).rstrip(), indent="     ")
        if ok is not None and (done.returncode == 0) != ok:
            expected = "succeed" if ok else "be refused"
            raise DemoError(f"`{self.narrator.shown(argv)}` should {expected} but exited {done.returncode}:\n"
                            f"{(done.stdout + done.stderr).strip()}")  # fmt: skip
        return done


class Service:
    """One long-running process (a daemon, the collector, the broker) in its own process group."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str] | None = None) -> Service:
        """Start it with its output in `log_path`; its own session, so Ctrl-C on the demo reaches us only."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env,
                                         start_new_session=True)  # fmt: skip
        return self

    @property
    def pid(self) -> int | None:
        """The process id while it runs."""
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        """Raise DemoError with the end of its log when it has died."""
        if self.proc is not None and self.proc.poll() is not None:
            raise DemoError(f"{self.name} exited with {self.proc.returncode}; its log ends:\n{self.tail()}")

    def stop(self, timeout_s: float = STOP_WAIT_S) -> int | None:
        """SIGTERM its group, wait, then SIGKILL; the exit code (None when never started)."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            # The group id stays ours until the leader is reaped, so signalling the group is safe here.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5.0)
        return proc.returncode

    def tail(self, lines: int = 15) -> str:
        """The end of its log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def wait_for(what: str, check: Callable[[], Any], timeout_s: float, every_s: float = 0.2,
             alive: Callable[[], None] | None = None) -> Any:
    """Poll `check()` until it returns something truthy (returned); DemoError naming `what` on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        if alive is not None:
            alive()
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise DemoError(f"gave up after {timeout_s:g} s waiting for {what}")
        time.sleep(every_s)  # a process on the other side of a socket: nothing to wait on but time


# --- a local mosquitto ----------------------------------------------------------------------------

def mosquitto_config(port: int, folder: Path) -> str:
    """A throw-away broker: loopback only, anonymous, no persistence, subscriptions logged."""
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false",
             f"log_dest file {folder / 'mosquitto.log'}", "log_type error", "log_type warning",
             "log_type notice", "log_type information", "log_type subscribe", "connection_messages true",
             # The default 1000 silently drops QoS 1 messages queued for a slow subscriber.
             "max_queued_messages 100000"]  # fmt: skip
    if os.geteuid() == 0:
        lines.append("user root")  # else mosquitto drops to a user that cannot write the log
    return "\n".join(lines) + "\n"


def mqtt_answers(port: int, timeout_s: float = 1.0) -> bool:
    """True when something on the port answers an MQTT 3.1.1 CONNECT with a CONNACK."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
            connack_probe(sock)
    except OSError:
        return False
    return True


def start_broker(binary: str, folder: Path, tries: int = 3) -> tuple[Service, str]:
    """Start mosquitto on a free port from a temp config; the service and its mqtt:// URL."""
    folder.mkdir(parents=True, exist_ok=True)
    last = ""
    for _ in range(tries):  # another process may take the free port between our look and mosquitto's bind
        port = free_port()
        conf = folder / "mosquitto.conf"
        conf.write_text(mosquitto_config(port, folder))
        broker = Service("mosquitto", [binary, "-c", str(conf)], folder / "mosquitto.out").start()
        deadline = time.monotonic() + 10.0
        while broker.alive() and time.monotonic() < deadline:
            if mqtt_answers(port):
                return broker, f"mqtt://127.0.0.1:{port}"
            time.sleep(0.05)  # the port is not open yet
        broker.stop()
        last = log_tail(folder / "mosquitto.log") or broker.tail()
    raise DemoError(f"mosquitto did not start ({tries} tries); its log ends:\n{last}")


def log_tail(path: Path, lines: int = 15) -> str:
    """The end of a text file, or '' when there is none."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
