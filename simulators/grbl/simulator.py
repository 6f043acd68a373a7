"""A GRBL 1.1h laser controller on a pseudo-terminal, for tests and `fabnode sim grbl`.

    with GrblSimulator(time_scale=0).start() as sim:
        port = serial.Serial(sim.port, 115200, timeout=1)   # the banner arrives boot_s after this
        ...
        sim.executed, sim.stats.laser_on_s, sim.stats.overflow_drops

The firmware logic is the pure model in `simulators.grbl.core` (bytes in, bytes out, `now` passed
in); `simulators.wire.Wire` paces the bytes at the baud rate, adds latency, keeps the 128-byte RX
buffer (bytes arriving while it is full are dropped and counted in `stats.overflow_drops`) and runs
everything in one thread.

Behaviour worth knowing (all as GRBL 1.1h does unless said otherwise):
- Greeting. Nothing is sent before the host opens the port (pyserial flushes its input on open, so
  a banner sent earlier would be lost anyway). The host's open is a DTR reset: `boot_s` (0.05 s)
  later the banner `\\r\\nGrbl 1.1h ['$' for help]\\r\\n` arrives; bytes sent during those `boot_s` are
  lost (the bootloader eats them, counted in `stats.boot_drops`). A soft reset (0x18) prints it too.
- One `ok`/`error:N` per line, in order; `ok` for a motion means "taken into the planner". CR and LF
  each end a line, so a host sending CR LF gets two answers per line (as real GRBL does).
- Real-time bytes `?` `!` `~` 0x18 and 0x80-0xFF never enter the RX buffer. Status reports:
  `<Idle|MPos:0.000,0.000,0.000|Bf:15,128|FS:0,0>` in report.c's order (Bf before FS; `$10=3` by
  default here, so Bf is shown); WCO in the first report after a reset and every 10/30, Ov in the
  second and every 10/20. No report during `$H` or after a critical alarm (GRBL ignores `?` then).
- Reset while moving (Run, Hold:1, Jog) prints `ALARM:3` before the banner; the machine then stays
  in Alarm (`[MSG:'$H'|'$X' to unlock]` after the banner) until `$X` or `$H`: a reset does NOT
  clear an alarm in GRBL 1.1. ALARM:1/2 (limits) are critical: `[MSG:Reset to continue]`, then no
  answer to anything (lines wait in the RX buffer) until a reset.
- Homing is enabled (`$22=1`, `$H` takes `homing_s`=2 machine seconds) but the board does not boot
  locked unless `homing_lock=True`.
- Laser mode (`$32`, `laser_mode=True`): the beam burns during G1/G2/G3 moves with M3/M4 and S>0;
  `stats.laser_on_s`/`laser_distance_mm` count those moves in machine time (not scaled by
  time_scale; feed overrides count), `stats.laser_dwell_s` a G4 dwell with M3 on in a G1 mode.
- The beam now: `sim.core.beam_power()` (S, 0: off). `!` holds motion only: with `$32=0` the beam
  stays on in Hold:0 (a spindle's hold), with `$32=1` it is off. The safety door 0x84 (Door:2 while
  decelerating, then Door:0) switches it off in either mode, supersedes a hold, cancels a jog; `~`
  resumes. There is no door input: the door reads closed, so Door:1 never shows.
- Time: moves take length/feed (no acceleration; arcs are cut into chords, one planner block each),
  times `time_scale` in wall-clock time (0: instant). A feed hold decelerates over rate/$120.
- `executed`: every line answered `ok` that held a command (not blank or comment-only), as received
  minus its line end, in order (G-code lines in check mode `$C` excluded); `record=PATH` writes
  them one per line, flushed as each `ok` goes out.

Faults (each fires once). "Line N" is the N-th line the firmware's main loop took from its RX
buffer since the simulator started (blank lines and `$` commands count, real-time bytes do not,
soft resets do not restart the count; for a host sending one LF per line it is the host's N-th line):
- `reset_at_line=N`: the board resets by itself instead of running line N (no answer to it): buffers
  flushed, beam off, position 0, banner (a brown-out, not a soft reset: no ALARM:3).
- `alarm_at_line=N` (or `(N, code)`), `alarm_code` (1): `ALARM:code` instead of running line N. Codes 1-2
  are critical (see above), 3 and 6-9 come with GRBL's own reset (banner), 4-5 answer line N `error:9`.
- `error_at_line=N`, `error_code` (20): line N is answered `error:code` and not run.
- `silence_at_line=N`: from line N on the firmware answers nothing, real-time bytes included (hung).
- `drop_connection_at_line=N`: the pty closes when line N arrives (the host sees an I/O error).
- `noise=P`: the fraction of host lines in which the wire flips a bit of one byte (`reply_noise` the
  same for replies).

For `fabnode sim grbl`, `CLI_OPTIONS` lists the flags (flag, from_cli keyword, type, default, help)
and `from_cli(**values)` builds the simulator from them:
    fabnode sim grbl [--baud N] [--latency-ms X] [--rx-buffer N] [--time-scale X] [--noise P]
      [--seed N] [--record FILE] [--laser-mode/--no-laser-mode] [--reset-at-line N]
      [--alarm-at-line N] [--alarm-code N] [--error-at-line N] [--silence-at-line N]
      [--drop-connection-at-line N]
e.g. `sim = from_cli(baud=115200, latency_ms=1.0, laser_mode=True).start()`, print `sim.port`, wait
for Ctrl-C, `sim.stop()`, print `sim.stats.as_dict()`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import IO, Any

from simulators.grbl.codes import A_HARD_LIMIT, E_UNSUPPORTED_COMMAND
from simulators.grbl.core import GrblConfig, GrblCore, GrblStats
from simulators.wire import Wire

CLI_OPTIONS: tuple[tuple[str, str, type, object, str], ...] = (
    ("--baud", "baud", int, 115200, "Serial speed in baud (bytes are paced at 10 bits each)."),
    ("--latency-ms", "latency_ms", float, 1.0, "One-way latency added to every byte, in milliseconds."),
    ("--rx-buffer", "rx_buffer", int, 128, "The firmware's serial RX buffer in bytes."),
    ("--time-scale", "time_scale", float, 1.0, "Wall-clock seconds per machine second (0: instant moves)."),
    ("--noise", "noise", float, 0.0, "Fraction of host lines given one corrupted byte."),
    ("--seed", "seed", int, 0, "Seed of the noise generator."),
    ("--record", "record", Path, None, "Write every executed line to this file."),
    ("--laser-mode/--no-laser-mode", "laser_mode", bool, True, "GRBL laser mode ($32)."),
    ("--reset-at-line", "reset_at_line", int, None, "Reset by itself at this line (banner mid-job)."),
    ("--alarm-at-line", "alarm_at_line", int, None, "Raise an alarm at this line."),
    ("--alarm-code", "alarm_code", int, A_HARD_LIMIT, "ALARM code for --alarm-at-line (1: hard limit)."),
    ("--error-at-line", "error_at_line", int, None, "Answer this line error:20 instead of running it."),
    ("--silence-at-line", "silence_at_line", int, None, "Stop answering anything from this line on."),
    ("--drop-connection-at-line", "drop_connection_at_line", int, None, "Close the port at this line."),
)


class GrblSimulator:
    """GRBL 1.1h on a pty: `start()`, open `port` with pyserial, read `executed` and `stats`, `stop()`."""

    def __init__(
        self,
        baud: int = 115200,
        latency_s: float = 0.001,
        rx_buffer: int = 128,
        time_scale: float = 1.0,
        noise: float = 0.0,
        seed: int = 0,
        record: str | Path | None = None,
        laser_mode: bool = True,
        *,
        reply_noise: float = 0.0,
        boot_s: float = 0.05,
        homing_lock: bool = False,
        reset_at_line: int | None = None,
        alarm_at_line: int | tuple[int, int] | None = None,
        alarm_code: int = A_HARD_LIMIT,
        error_at_line: int | None = None,
        error_code: int = E_UNSUPPORTED_COMMAND,
        silence_at_line: int | None = None,
        drop_connection_at_line: int | None = None,
    ) -> None:
        if isinstance(alarm_at_line, tuple):
            alarm_at_line, alarm_code = alarm_at_line
        config = GrblConfig(
            rx_buffer=rx_buffer, time_scale=time_scale, laser_mode=laser_mode, homing_lock=homing_lock,
            boot_s=boot_s, reset_at_line=reset_at_line, alarm_at_line=alarm_at_line,
            alarm_code=alarm_code, error_at_line=error_at_line, error_code=error_code,
            silence_at_line=silence_at_line, drop_connection_at_line=drop_connection_at_line,
        )  # fmt: skip
        self.stats = GrblStats()
        self.core = GrblCore(config, stats=self.stats)
        self.core.on_executed = self._record_line
        self._record_path = Path(record) if record is not None else None
        self._record_file: IO[str] | None = None
        self.wire = Wire(
            self, baud=baud, latency_s=latency_s, rx_buffer=rx_buffer, noise=noise,
            reply_noise=reply_noise, seed=seed, stats=self.stats, name="grbl-sim",
        )  # fmt: skip

    # -- life cycle ------------------------------------------------------------------------------

    @property
    def port(self) -> str:
        """The pty path the host opens."""
        return self.wire.port

    @property
    def executed(self) -> list[str]:
        """Lines answered `ok`, as received minus the line end, in order."""
        return self.core.executed

    def start(self) -> GrblSimulator:
        """Open the record file and start the simulator thread; returns self."""
        if self._record_path is not None:
            self._record_file = self._record_path.open("w", encoding="utf-8")
        self.core.clock = time.monotonic()
        self.wire.start()
        return self

    def stop(self) -> None:
        """Stop the thread, close the pty and the record file."""
        self.wire.stop()
        if self._record_file is not None:
            self._record_file.close()
            self._record_file = None

    def __enter__(self) -> GrblSimulator:
        if not self.wire.running:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- FirmwareModel (called from the wire's thread only) -----------------------------------------

    def attach(self, wire: Wire) -> None:
        """The wire's RX buffer becomes the firmware's; a dropped connection closes the wire."""
        self.core.rx = wire
        self.core.on_drop_connection = wire.drop_connection

    def on_wire_byte(self, byte: int, now: float) -> bool:
        """Real-time bytes are acted on at once (their answers go out straight away)."""
        consumed = self.core.on_byte(byte, now)
        self._send()
        return consumed

    def on_host_open(self, now: float) -> None:
        """The host's open resets the board (DTR); the banner follows `boot_s` later."""
        self.core.host_opened(now)

    def poll(self, now: float) -> float | None:
        """Run the firmware's main loop up to `now`."""
        deadline = self.core.poll(now)
        self._send()
        return deadline

    def _send(self) -> None:
        data = self.core.take_output()
        if data:
            self.wire.send(data)

    def _record_line(self, line: str) -> None:
        if self._record_file is not None:
            self._record_file.write(line + "\n")
            self._record_file.flush()


def from_cli(**values: Any) -> GrblSimulator:
    """Build a simulator from `CLI_OPTIONS` values (latency in ms); unknown keywords are an error."""
    values = dict(values)
    latency_ms = values.pop("latency_ms", 1.0)
    known = {kw for _, kw, *_ in CLI_OPTIONS} - {"latency_ms"}
    unknown = set(values) - known
    if unknown:
        raise TypeError(f"unknown simulator option(s): {', '.join(sorted(unknown))}")
    return GrblSimulator(latency_s=float(latency_ms) / 1000.0, **values)
