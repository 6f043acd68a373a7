"""The serial port as `stream`, `console`, calibration and `doctor` open it: one protocol factory, one
bounded wait for the board's greeting, one way to say that the firmware does not answer.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from fabnode.cli import exits

if TYPE_CHECKING:
    from drivers.hostproto import HostProtocol
    from drivers.streamer import Streamer
    from fabnode.config.settings import Config

FIRMWARES = ("marlin", "grbl")
# The protocols' own defaults where the command line gives none (the daemon's come from its config).
DEFAULT_RX_WINDOW = {"marlin": 127, "grbl": 128}
DEFAULT_NO_ANSWER_S = {"marlin": 60.0, "grbl": 10.0}


def check_firmware(firmware: str) -> str:
    """`firmware` when it is marlin or grbl, else a usage error naming --firmware."""
    if firmware not in FIRMWARES:
        fail(f"--firmware {firmware!r}: use one of {', '.join(FIRMWARES)}", exits.USAGE)
    return firmware


def make_protocol(firmware: str, *, rx_window: int | None = None, answer_timeout_s: float | None = None
                  ) -> HostProtocol:
    """The host protocol for this firmware, built by the node's own factory (fabnode.node.wiring)."""
    from fabnode.node.wiring import make_protocol as node_protocol

    check_firmware(firmware)
    return node_protocol(command_line_config(firmware, rx_window, answer_timeout_s))


def command_line_config(firmware: str, rx_window: int | None, no_answer_s: float | None) -> Config:
    """A node config made of the command line's options, read by the config's own reader (its bounds
    and its defaults, written once there); a usage error names the option when a value is out of range.
    """
    from fabnode.config.settings import ConfigError, load_config

    kind = "laser" if firmware == "grbl" else "printer"
    toml = (f'[node]\nlab = "cli"\nmachine = "{firmware}"\n[machine]\nkind = "{kind}"\n'
            f'firmware = "{firmware}"\n[serial]\nport = "cli"\n'
            f"rx_window = {DEFAULT_RX_WINDOW[firmware] if rx_window is None else rx_window}\n"
            f"no_answer_s = {DEFAULT_NO_ANSWER_S[firmware] if no_answer_s is None else no_answer_s!r}\n")
    with tempfile.TemporaryDirectory(prefix="fabnode-cli-") as folder:
        path = Path(folder) / "command-line.toml"
        path.write_text(toml)
        try:
            return load_config(path)
        except ConfigError as exc:
            option = "--rx-window" if "rx_window" in str(exc) else "--timeout"
            fail(f"{option}: {str(exc).split(': ', 1)[-1]}", exits.USAGE)


def probe_command(firmware: str) -> str:
    """A harmless command whose answer proves the firmware listens (GRBL: a status query)."""
    return "?" if firmware == "grbl" else "M105"


def connect(port: str, baud: int, protocol: HostProtocol, firmware: str,
            on_event: Callable[[object], None], greeting_timeout_s: float) -> Streamer:
    """Open the port and wait for the greeting a board gives after its reset-on-open (bounded).

    No greeting in time: probe once (a board that does not reset on open answers at once);
    still nothing: exit with the no-answer code. The port will not open or is lost: the port code.
    """
    from drivers.serial_link import PortLost, SerialLink
    from drivers.streamer import Streamer

    try:
        streamer = Streamer(SerialLink(port, baud), protocol, on_event)
    except PortLost as exc:
        fail(f"cannot open {port}: {exc.reason}", exits.PORT)
    if streamer.wait_ready(greeting_timeout_s):
        return streamer
    if firmware != "grbl":
        streamer.send_realtime(b"\n")  # stray bytes on the line end there, not glued to the probe
    streamer.send_command(probe_command(firmware))
    if streamer.wait_ready(max(1.0, greeting_timeout_s)) and streamer.lost is None:
        return streamer
    if firmware == "grbl" and streamer.lost is None:
        # After a limit alarm GRBL answers nothing, `?` included, until a soft reset: send it.
        exits.error(f"{port}: no answer to '?': sending GRBL a soft reset (Ctrl-X), as it needs after a "
                    "limit alarm")
        streamer.send_realtime(b"\x18")
        if streamer.wait_ready(max(2.0, greeting_timeout_s)) and streamer.lost is None:
            return streamer
    lost = streamer.lost
    streamer.close()
    if lost is not None:
        fail(f"{port}: {lost.reason}", exits.PORT)
    fail(f"no answer from the firmware on {port} at {baud} baud: no greeting within "
         f"{greeting_timeout_s:g} s and no reply to {probe_command(firmware)!r} "
         f"(wrong port, baud rate or firmware?" + (" GRBL did not answer a soft reset either)" if firmware
                                                    == "grbl" else ")"), exits.NO_ANSWER)


def fail(message: str, code: int) -> NoReturn:
    """Print a clear message on stderr and leave with `code`."""
    exits.fail(message, code)
