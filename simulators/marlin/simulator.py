"""A Marlin 2.1 printer on a pseudo-terminal: open `sim.port` with pyserial and talk G-code to it.

    with MarlinSimulator(time_scale=0) as sim:
        port = serial.Serial(sim.port, 115200, timeout=1)
        ...
        assert sim.executed == [...]

The wire (baud pacing, latency, 128-byte RX buffer that drops on overflow, noise) is simulators.wire;
the firmware (line-number/checksum checks, BUFSIZE 4 command queue, 16-block planner, heaters,
stored settings, faults) is simulators.marlin.firmware.

Greeting: the board greets (`start`, `echo:Marlin 2.1.2`, ...) `boot_s` after the host first opens
the port, as a board reset by DTR does; bytes the host sends during those `boot_s` are lost, as they
are on a real board in its bootloader. `greet_on_open=False` greets at start-up instead (a host that
opens later misses it, pyserial having flushed its input).

Faults (`*_at_line`) fire once, at the numbered line whose N is that number (see
simulators.marlin.firmware). Other firmware's habits, as options: `flush_on_error=False` keeps the RX
buffer after a refused line (Marlin before 2019: every line behind it is refused too),
`ok_before_output` answers M105 with `ok` before its `T:` line, `action_space` writes host actions
as `// action:...`, `locked` answers every command `echo:Printer locked!` and `ok` (PASSWORD_FEATURE).
`faithful_cuts` reads a line without N as Marlin 2.x does (the tail of a line cut by the RX flush
after an error runs if it starts at a command: simulators.marlin.options); `tx_buffer` is Marlin's
TX_BUFFER_SIZE (0 on an AVR: the flush waits until the `Error:` line has been written).
`virtual_printer` answers lines as OctoPrint's virtual printer does (simulators.marlin.virtual);
`virtual_errors` are its `simulated_errors` (its default: options.VIRTUAL_PRINTER_ERRORS).

USB replug: `unplug()` closes the pty as a pulled cable does (the host's port fails) and `plug()`
brings a NEW pty, as the kernel gives a replugged adapter a new tty. Give `link=PATH` to keep a stable
symlink at PATH pointing at the current pty (as udev's /dev/serial/by-id/... or a lab's own rule does):
it vanishes on unplug and comes back on plug, so a host reopens the same path. The board resets when
the host opens the new port (DTR), as a real one does: its queue is gone, its heaters off.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from types import TracebackType
from typing import IO

from simulators.marlin.firmware import MarlinConfig, MarlinFaults, MarlinFirmware, MarlinStats
from simulators.marlin.options import VIRTUAL_ERROR_ACTIONS
from simulators.wire import Wire

__all__ = ["MarlinConfig", "MarlinFaults", "MarlinSimulator", "MarlinStats"]


class MarlinSimulator:
    """A simulated Marlin printer behind a pty; `start()` runs it in one thread."""

    def __init__(
        self,
        baud: int = 115200,
        latency_s: float = 0.001,
        rx_buffer: int = 128,
        time_scale: float = 1.0,
        noise: float = 0.0,
        seed: int = 0,
        record: str | Path | None = None,
        advanced_ok: bool = False,
        *,
        reply_noise: float = 0.0,
        bufsize: int = 4,
        planner_blocks: int = 16,
        busy_interval_s: float = 2.0,
        temp_interval_s: float = 1.0,
        boot_s: float = 0.05,
        greet_on_open: bool = True,
        reset_at_line: int | None = None,
        kill_at_line: int | None = None,
        thermal_runaway_at_line: int | None = None,
        silence_at_line: int | None = None,
        resend_without_ok_at_line: int | None = None,
        drop_connection_at_line: int | None = None,
        action_at_line: tuple[int, str] | None = None,
        checksum_error_at_line: int | None = None,
        flush_on_error: bool = True,
        ok_before_output: bool = False,
        action_space: bool = False,
        locked: bool = False,
        virtual_printer: bool = False,
        faithful_cuts: bool = False,
        tx_buffer: int | None = None,
        virtual_errors: tuple[tuple[int, str], ...] = (),
        link: str | Path | None = None,
    ) -> None:
        if action_at_line is not None and action_at_line[1] not in ("pause", "resume", "cancel"):
            raise ValueError(f"action_at_line: {action_at_line[1]!r} is not pause, resume or cancel")
        for _n, action in virtual_errors:
            if action not in VIRTUAL_ERROR_ACTIONS:
                raise ValueError(
                    f"virtual_errors: {action!r} is not one of {', '.join(VIRTUAL_ERROR_ACTIONS)}"
                )
        faults = MarlinFaults(
            reset_at_line=reset_at_line,
            kill_at_line=kill_at_line,
            thermal_runaway_at_line=thermal_runaway_at_line,
            silence_at_line=silence_at_line,
            resend_without_ok_at_line=resend_without_ok_at_line,
            drop_connection_at_line=drop_connection_at_line,
            action_at_line=action_at_line,
            checksum_error_at_line=checksum_error_at_line,
            virtual_errors=tuple((int(n), str(a)) for n, a in virtual_errors),
        )
        config = MarlinConfig(
            bufsize=bufsize,
            planner_blocks=planner_blocks,
            time_scale=time_scale,
            advanced_ok=advanced_ok,
            busy_interval_s=busy_interval_s,
            temp_interval_s=temp_interval_s,
            boot_s=boot_s,
            greet_on_open=greet_on_open,
            seed=seed,
            faults=faults,
            flush_on_error=flush_on_error,
            ok_before_output=ok_before_output,
            action_space=action_space,
            locked=locked,
            virtual_printer=virtual_printer,
            faithful_cuts=faithful_cuts,
            tx_buffer=tx_buffer,
        )
        self.stats = MarlinStats()
        self.executed: list[str] = []
        self._executed_changed = threading.Condition()
        self._record: IO[str] | None = open(record, "w", encoding="utf-8") if record else None  # noqa: SIM115
        self.firmware = MarlinFirmware(config, self.stats, self._on_executed)
        self._wire_options = (baud, latency_s, rx_buffer, noise, reply_noise, seed)
        self.wire = self._new_wire()
        self.port = self.wire.port
        self.link = Path(link) if link is not None else None
        self.plugged = True
        self._point_link()

    def _on_executed(self, command: str) -> None:
        """Record one processed command (list, then the record file, flushed)."""
        with self._executed_changed:
            self.executed.append(command)
            self._executed_changed.notify_all()
        if self._record is not None:
            self._record.write(command + "\n")
            self._record.flush()

    def start(self) -> MarlinSimulator:
        """Start the simulator thread; returns self."""
        self.wire.start()
        return self

    def stop(self) -> None:
        """Stop the thread, close the pty and the record file (and remove the stable link)."""
        self.wire.stop()
        self._remove_link()
        if self._record is not None:
            self._record.close()
            self._record = None

    # ---- USB replug -------------------------------------------------------------------------------

    def unplug(self) -> None:
        """Pull the USB cable: the stable link goes, the pty closes (the host's reads and writes fail)."""
        if not self.plugged:
            return
        self.plugged = False
        self._remove_link()
        self.wire.stop()

    def plug(self) -> None:
        """Plug the cable back: a new pty (a new path), the stable link points at it, the thread runs.

        The board is reset when the host opens the port (DTR): what it had queued is lost and its
        heaters are off, as after a real replug; it greets `boot_s` after the host opens the port.
        """
        if self.plugged:
            return
        self.firmware._power_on()  # the reset a DTR pulse causes (as reset_at_line does); a kill() too
        self.firmware.halted = False
        self.stats.host_opened = False  # the new pty waits for the host's open, then the board greets
        self.wire = self._new_wire()
        self.port = self.wire.port
        self.plugged = True
        self._point_link()
        self.wire.start()

    def _new_wire(self) -> Wire:
        baud, latency_s, rx_buffer, noise, reply_noise, seed = self._wire_options
        return Wire(self.firmware, baud=baud, latency_s=latency_s, rx_buffer=rx_buffer, noise=noise,
                    reply_noise=reply_noise, seed=seed, stats=self.stats, name="marlin-sim")  # fmt: skip

    def _point_link(self) -> None:
        if self.link is None:
            return
        temporary = self.link.with_name(f".{self.link.name}.new")
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        temporary.symlink_to(self.port)
        os.replace(temporary, self.link)  # atomic: a host never sees a half-made link

    def _remove_link(self) -> None:
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()

    def wait_executed(self, count: int, timeout: float) -> bool:
        """Wait until at least `count` commands were executed; False on timeout."""
        with self._executed_changed:
            return self._executed_changed.wait_for(lambda: len(self.executed) >= count, timeout)

    @property
    def halted(self) -> bool:
        """True after kill(), thermal runaway, M112, or an injected silence."""
        return self.firmware.halted

    def __enter__(self) -> MarlinSimulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
