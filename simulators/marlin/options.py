"""The Marlin simulator's build options, injected faults and counters (plain data, no behaviour)."""

from __future__ import annotations

from dataclasses import dataclass, field

from simulators.wire import WireStats


@dataclass
class MarlinStats(WireStats):
    """Wire counters plus what the firmware saw."""

    lines_received: int = 0  # non-empty lines read from the RX buffer (refused ones included)
    commands_executed: int = 0
    line_number_errors: int = 0
    checksum_errors: int = 0  # checksum mismatches, including injected resend-without-ok
    missing_checksum_errors: int = 0
    resends_requested: int = 0
    unknown_commands: int = 0
    unnumbered_commands_run: int = 0  # lines without N that ran (manual commands, cut tails)
    faults_fired: list[str] = field(default_factory=list)


@dataclass
class MarlinFaults:
    """Faults to inject, each at the numbered line with that N (None: never)."""

    reset_at_line: int | None = None
    kill_at_line: int | None = None
    thermal_runaway_at_line: int | None = None
    silence_at_line: int | None = None
    resend_without_ok_at_line: int | None = None
    drop_connection_at_line: int | None = None
    action_at_line: tuple[int, str] | None = None  # (N, "pause" | "resume" | "cancel")
    checksum_error_at_line: int | None = None  # line N arrives corrupted once (refused, Resend:, ok)
    # OctoPrint's virtual printer's `simulated_errors` (N, "resend" | "resend_with_timeout" |
    # "missing_lineno" | "checksum_mismatch"), each once; its default is VIRTUAL_PRINTER_ERRORS.
    virtual_errors: tuple[tuple[int, str], ...] = ()


VIRTUAL_ERROR_ACTIONS = ("resend", "resend_with_timeout", "missing_lineno", "checksum_mismatch")
VIRTUAL_PRINTER_ERRORS = ((100, "resend"), (105, "resend_with_timeout"), (110, "missing_lineno"),
                          (115, "checksum_mismatch"))  # fmt: skip


@dataclass
class MarlinConfig:
    """The firmware's build options and the simulation's knobs."""

    bufsize: int = 4
    planner_blocks: int = 16
    time_scale: float = 1.0
    advanced_ok: bool = False
    busy_interval_s: float = 2.0  # HOST_KEEPALIVE_INTERVAL (wall time)
    temp_interval_s: float = 1.0  # temperature lines while waiting for a heater (wall time)
    boot_s: float = 0.05  # from reset (port open) to `start`
    greet_on_open: bool = True  # False: greet at start-up (the host may miss it)
    seed: int = 0
    # Behaviours of other firmware (and older Marlin) the host must survive:
    flush_on_error: bool = True  # False: a refused line leaves the RX buffer as it is (Marlin < 2019)
    ok_before_output: bool = False  # M105 says `ok` first, its `T:` line after (some Marlin forks)
    action_space: bool = False  # host actions as `// action:pause` (Prusa MK3, Repetier)
    locked: bool = False  # PASSWORD_FEATURE locked: every command answered `Printer locked!` + `ok`
    # Marlin 2.x reads a line without N as a command whatever it holds (1.x refused one with a `*`:
    # `No Line Number with checksum`) and its parser drops the `*...`: the tail of a line cut by
    # the RX flush after an error runs if it starts at a command (`G1X10*72`), else it is an
    # unknown command (`echo:Unknown command: "72"` and `ok`). GCodeQueue::get_serial_commands.
    faithful_cuts: bool = False
    # Marlin's TX_BUFFER_SIZE (Configuration_adv.h; 0, the AVR default, makes every write block until
    # the UART took it), None: writes never block. gcode_line_error prints the `Error:` line BEFORE it
    # reads the RX buffer empty, so with a small buffer the flush comes ~40 byte-times after the bad
    # line was read and cuts a later line anywhere, not just its first bytes.
    tx_buffer: int | None = None
    # OctoPrint's virtual printer (simulators.marlin.virtual): no flush, one line at a time, its texts.
    virtual_printer: bool = False
    faults: MarlinFaults = field(default_factory=MarlinFaults)
