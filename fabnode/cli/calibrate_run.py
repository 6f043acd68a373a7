"""Running one calibration dialogue for the CLI: where (daemon or port), answers (flags, --yes, stdin),
output (text or --json), the config edit, and the exit codes in EXIT_HELP.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import typer

from fabnode.cli import exits
from fabnode.cli.calibrate_port import DaemonChannel, FirmwareChannel, MachineBusy, NoAnswer, PortGone
from fabnode.cli.firmware_link import FIRMWARES, connect, make_protocol
from fabnode.config.settings import Config, ConfigError, load_config
from fabnode.node.control import ControlError, request
from fabnode.node.wiring import make_protocol as node_protocol
from fabnode.paths import control_socket_path, resolve_config, resolve_state_dir
from fabnode.technician.calibrate import (
    Ask,
    CalibrationError,
    Dialogue,
    JobResult,
    Outcome,
    RecordMaterial,
    Reply,
    Send,
    StreamJob,
    drive,
    member_job_refusal,
)
from fabnode.technician.toml_edit import MaterialEditError, set_material_laser

EXIT_FAILED, EXIT_USAGE, EXIT_BUSY, EXIT_NO_DAEMON = exits.FAILED, exits.USAGE, exits.BUSY, exits.NO_DAEMON
EXIT_NO_ANSWER, EXIT_PORT, EXIT_INTERRUPTED = exits.NO_ANSWER, exits.PORT, exits.INTERRUPTED
EXIT_HELP = (
    f"Exit codes: 0 done; 1 the routine failed or was refused (the firmware refused a command, no probe, "
    f"a measurement out of bounds, the technician said no); 2 bad usage or config; {EXIT_BUSY} a member's "
    f"session or a job is open on the machine; {EXIT_NO_DAEMON} no fabnode daemon runs (relay, leds, "
    f"inputs, badge without --uid); {EXIT_NO_ANSWER} no answer; {EXIT_PORT} serial port could not be "
    f"opened or was lost; 130 Ctrl-C (heaters/beam switched off first)."
)
MAX_TRIES = 3


class Channel(Protocol):
    """A FirmwareChannel or a DaemonChannel."""

    def command(self, line: str, timeout_s: float) -> Reply: ...

    def stream(self, name: str, lines: tuple[str, ...], timeout_s: float) -> JobResult: ...

    def make_safe(self, timeout_s: float = 5.0) -> None: ...

    def close(self) -> None: ...


@dataclass
class Common:
    """The options every firmware routine takes."""

    port: str | None = None
    firmware: str | None = None
    baud: int | None = None
    config_path: Path | None = None
    state_dir: Path | None = None
    yes: bool = False
    json_out: bool = False
    greeting_timeout_s: float = 3.0
    config: Config | None = field(default=None, init=False)

    def load(self) -> Common:
        """Read the config (exit 2 on a bad one) and fill port, firmware and baud from it."""
        self.config_path = resolve_config(self.config_path)
        if self.config_path is not None:
            try:
                self.config = load_config(self.config_path)
            except (ConfigError, OSError) as exc:
                fail(f"{exc}", EXIT_USAGE)
            assert self.config is not None
            self.port = self.port or self.config.serial.port
            self.firmware = self.firmware or self.config.machine.firmware
            self.baud = self.baud or self.config.serial.baud
        if not self.port:
            fail("give --port (or --config with a [serial] port)", EXIT_USAGE)
        if self.firmware not in FIRMWARES:
            fail(f"give --firmware {' or '.join(FIRMWARES)} (or --config)", EXIT_USAGE)
        self.baud = self.baud or 115200
        return self

    @property
    def machine(self) -> str:
        """The machine's name for messages."""
        return self.config.node.machine if self.config is not None else str(self.port)

    def socket_path(self) -> Path:
        """The daemon's control socket for this node."""
        configured = self.config.node.state_dir if self.config is not None else None
        return control_socket_path(resolve_state_dir(self.state_dir, configured))


def fail(message: str, code: int) -> None:
    """`fabnode: <message>` on stderr, exit `code`."""
    exits.fail(message, code)


# --- the daemon ------------------------------------------------------------------------------------


def daemon_status(socket_path: Path) -> dict[str, Any] | None:
    """The daemon's status reply, or None when no daemon answers (no socket, or a stale one)."""
    if not (socket_path.exists() or socket_path.is_symlink()):
        return None
    try:
        return request(socket_path, {"cmd": "status"}, timeout=5.0)
    except (ControlError, ValueError):
        return None


def refuse_during_member_job(status: Mapping[str, Any] | None, machine: str) -> None:
    """Exit 3 when the daemon runs a member's job (or will not say)."""
    if status is None:
        return
    if status.get("ok") is False:
        fail(f"the fabnode daemon runs but gave no status ({status.get('error', '?')}): not touching "
             "the machine", EXIT_BUSY)
    refusal = member_job_refusal(status, machine)
    if refusal is not None:
        fail(refusal, EXIT_BUSY)


def daemon_request(common: Common, message: dict[str, Any], guard: bool, timeout_s: float = 10.0
                   ) -> dict[str, Any]:
    """One control-socket request (after the member-job guard when `guard`); exit 4 with no daemon."""
    path = common.socket_path()
    if guard:
        status = daemon_status(path)
        if status is None:
            fail(f"no fabnode daemon runs (no answer at {path}): `{message['cmd']}` goes through the "
                 "daemon, start it with `fabnode run` (or systemctl start fabnode)", EXIT_NO_DAEMON)
        refuse_during_member_job(status, common.machine)
    try:
        reply = request(path, message, timeout=timeout_s)
    except ControlError as exc:
        fail(f"{exc}: `{message['cmd']}` goes through the daemon, start it with `fabnode run`",
             EXIT_NO_DAEMON)
    if not reply.get("ok"):
        fail(f"the daemon refused {message['cmd']!r}: {reply.get('error', 'no reason given')}", EXIT_FAILED)
    return reply


# --- answers and output ----------------------------------------------------------------------------


class CliIO:
    """Carries a dialogue's steps out: the channel, answers from flags/--yes/stdin, the config file."""

    def __init__(self, channel: Channel, answers: Mapping[str, str | None], yes: bool, json_out: bool,
                 config_path: Path | None) -> None:
        self.channel = channel
        self.answers = answers
        self.yes = yes
        self.json_out = json_out
        self.config_path = config_path

    def send(self, step: Send) -> Reply:
        """Send one command through the channel."""
        return self.channel.command(step.line, step.timeout_s)

    def say(self, text: str) -> None:
        """Text for the technician (stderr under --json, so stdout stays one JSON object)."""
        typer.echo(text, err=self.json_out)

    def stream(self, step: StreamJob) -> JobResult:
        """Stream a short job."""
        return self.channel.stream(step.name, step.lines, step.timeout_s)

    def ask(self, step: Ask) -> object:
        """A flag's answer, else --yes's, else the technician's on stdin (asked again when invalid)."""
        given = self.answers.get(step.key)
        if given is not None:
            try:
                return step.parse(given)
            except ValueError as exc:
                raise CalibrationError(f"--{step.key} {given}: {exc}") from None
        if self.yes and (step.yes_no or step.default is not None):
            return step.parse("yes" if step.yes_no else str(step.default))
        return self._prompt(step)

    def _prompt(self, step: Ask) -> object:
        suffix = f" [{step.default}]" if step.default is not None else ""
        for _ in range(MAX_TRIES):
            typer.echo(f"{step.text}{suffix} ", nl=False, err=self.json_out)
            line = sys.stdin.readline()
            if not line:
                raise CalibrationError(f"no answer to {step.text!r} (end of input): give --{step.key}"
                                       + (" or --yes" if step.yes_no else ""))
            text = line.strip() or (step.default or "")
            try:
                return step.parse(text)
            except ValueError as exc:
                typer.echo(f"  {exc}", err=True)
        raise CalibrationError(f"no valid answer to {step.text!r} after {MAX_TRIES} tries")

    def record(self, step: RecordMaterial) -> str:
        """Write the material's laser settings into the config file (atomically, mode kept)."""
        if self.config_path is None:
            raise CalibrationError("no --config to record the material's settings in")
        path = self.config_path.resolve()
        try:
            text = path.read_text(encoding="utf-8")
            new = set_material_laser(text, step.material, step.laser_power, step.laser_feed_mm_min)
            write_atomically(path, new)
        except (OSError, MaterialEditError) as exc:
            raise CalibrationError(f"{path}: {exc}") from None
        return str(self.config_path)


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` so a crash leaves the old file or the new one, never half of it."""
    mode = path.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def print_outcome(outcome: Outcome, json_out: bool) -> None:
    """The routine's summary: one line, or one JSON object with --json."""
    if json_out:
        info = asdict(outcome)
        info["data"] = dict(outcome.data)
        typer.echo(json.dumps(info, default=str))
        return
    saved = {True: " (saved with M500)", False: " (not saved)", None: ""}[outcome.saved]
    typer.echo(f"{outcome.routine}: {outcome.summary}{saved}")


# --- running a routine -----------------------------------------------------------------------------


def open_target(common: Common) -> Channel:
    """The daemon when it runs (after the member-job guard), else the serial port."""
    assert common.firmware is not None and common.port is not None and common.baud is not None
    path = common.socket_path()
    status = daemon_status(path)
    if status is not None:
        refuse_during_member_job(status, common.machine)
        return DaemonChannel(path, common.firmware)
    channel = FirmwareChannel(common.firmware)
    # With the node's config, the routine speaks to the firmware exactly as the daemon would.
    protocol = node_protocol(common.config) if common.config is not None else make_protocol(common.firmware)
    streamer = connect(common.port, common.baud, protocol, common.firmware,
                       channel.on_event, common.greeting_timeout_s)
    return channel.attach(streamer)


def run_routine(common: Common, make: Callable[[], Dialogue], answers: Mapping[str, str | None]) -> None:
    """Run one firmware routine end to end and exit with its code."""
    dialogue = make()  # built first: bad values are refused before the port opens
    channel = open_target(common)
    io = CliIO(channel, answers, common.yes, common.json_out,
               common.config.path if common.config is not None else None)
    try:
        outcome = drive(dialogue, io)
    except KeyboardInterrupt:
        typer.echo("\nfabnode: Ctrl-C: making the machine safe (heaters / beam off)", err=True)
        channel.make_safe()
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except NoAnswer as exc:
        fail(f"{exc} (wrong port or baud rate, or the machine is busy?)", EXIT_NO_ANSWER)
    except PortGone as exc:
        fail(str(exc), EXIT_PORT)
    except MachineBusy as exc:
        fail(str(exc), EXIT_BUSY)
    except CalibrationError as exc:
        fail(str(exc), EXIT_FAILED)
    finally:
        channel.close()
    print_outcome(outcome, common.json_out)
