"""Preflight: what in a G-code file the machine must not be sent, each problem naming its file line.

The scanner (fabnode.gcode.scan) calls these checks as it reads; they stay cheap on the common path
(a comparison per line) and only build messages for the rare line that fails. Checks:

- a position outside the machine's volume: the first offending line per axis and side, with value and limit;
- a hotend or bed temperature above the machine's maximum;
- a command the lab forbids (profile.forbidden_commands, e.g. M500/M502 rewrite the firmware's EEPROM);
- a line too long for the firmware's line buffer. A Marlin host frames each command as
  `N<n> <command>*<checksum>` and Marlin keeps at most `max_line_length - 1` characters of it (the last
  byte of MAX_CMD_SIZE holds the terminating NUL); `n` is counted as the host does, one per command,
  and the checksum is taken at its widest (3 digits). GRBL stores the line without spaces and comments
  and keeps at most `max_line_length - 1` (LINE_BUFFER_SIZE 80) characters;
- a file that is not text (a NUL byte, or bytes that are not UTF-8): one problem, at the first such line;
- on a laser, a power S above profile.laser_max_power (GRBL's $30);
- a number the firmware cannot take as written (NaN, infinity, an exponent, beyond 1e9) and a negative
  net extrusion (fabnode.gcode.dialect);
- on GRBL, a `$` settings write, startup line or restore (`$32=0`, `$N0=`, `$RST=`), and any line GRBL
  answers with an error (unsupported G/M codes and letters). A `%` program delimiter is not a problem:
  it is no command, and the host never sends it (the scanner counts no command for it).
"""

from __future__ import annotations

from dataclasses import dataclass

from fabnode.machine.profile import GRBL, MachineProfile

# One bad setting repeated on every line would drown the report: past this many of one kind, one summary.
MAX_PER_KIND = 10
_AXES = "XYZ"


@dataclass(frozen=True, slots=True)
class Problem:
    """Something in the file the machine must not run, at a 1-based file line."""

    line: int
    message: str

    def to_json(self) -> dict[str, object]:
        """{"line": n, "message": "..."}."""
        return {"line": self.line, "message": self.message}


class Preflight:
    """Collects problems for one file against one machine profile."""

    def __init__(self, profile: MachineProfile) -> None:
        self.profile = profile
        self.problems: list[Problem] = []
        self._counts: dict[str, int] = {}
        self._last: dict[str, int] = {}
        self._volume_done: set[tuple[int, int]] = set()
        self._text_done = False
        self.grbl = profile.firmware == GRBL
        keep = profile.max_line_length - 1
        # Cheap filter for the scanner: shorter command text always fits, even framed as N99999999 ...*255.
        self.max_code_len = keep if self.grbl else keep - len("N99999999 *255")

    def _add(self, kind: str, line: int, message: str) -> None:
        count = self._counts.get(kind, 0) + 1
        self._counts[kind] = count
        self._last[kind] = line
        if count <= MAX_PER_KIND:
            self.problems.append(Problem(line, message))

    def finish(self) -> list[Problem]:
        """The problems in file-line order, with one summary line per kind that went past the cap."""
        out = sorted(self.problems, key=lambda p: p.line)
        for kind, count in self._counts.items():
            if count > MAX_PER_KIND:
                more = count - MAX_PER_KIND
                out.append(Problem(self._last[kind], f"{kind}: {more} more lines like these, up to this one"))
        return out

    def line_length(self, line: int, code: str, command_no: int) -> None:
        """Check a command whose text is longer than `max_code_len`; `command_no` counts commands from 1."""
        keep = self.profile.max_line_length - 1
        if self.grbl:
            size = len(code) - code.count(" ") - code.count("\t")
            if size > keep:
                self._add(
                    "Line too long", line, f"Line too long: {size} characters; GRBL keeps at most {keep}"
                )
            return
        framed = len(f"N{command_no} {code}*255")
        if framed > keep:
            self._add(
                "Line too long",
                line,
                f"Line too long: {framed} characters once sent as N{command_no} ...*checksum; "
                f"Marlin keeps at most {keep}",
            )

    def outside(self, line: int, axis: int, value: float) -> None:
        """A move reached `value` on `axis` (0..2), beyond the volume: report the first one per side."""
        low = value < self.profile.volume_min_mm[axis]
        side = 0 if low else 1
        if (axis, side) in self._volume_done:
            return
        self._volume_done.add((axis, side))
        if low:
            limit, word = self.profile.volume_min_mm[axis], "below the minimum"
        else:
            limit, word = self.profile.volume_max_mm[axis], "above the maximum"
        self._add(
            "Outside the build volume",
            line,
            f"Outside the build volume: {_AXES[axis]}{value:.3f} mm is {word} {limit:g} mm",
        )

    def hotend(self, line: int, celsius: float) -> None:
        """A hotend target; reported when above the machine's maximum."""
        if celsius > self.profile.max_hotend_c:
            self._add(
                "Hotend temperature",
                line,
                f"Hotend temperature {celsius:g} °C is above the machine's maximum "
                f"{self.profile.max_hotend_c:g} °C",
            )

    def bed(self, line: int, celsius: float) -> None:
        """A bed target; reported when above the machine's maximum."""
        if celsius > self.profile.max_bed_c:
            self._add(
                "Bed temperature",
                line,
                f"Bed temperature {celsius:g} °C is above the machine's maximum "
                f"{self.profile.max_bed_c:g} °C",
            )

    def forbidden(self, line: int, command: str) -> None:
        """A command on the lab's forbidden list."""
        self._add(
            "Forbidden command", line, f"Forbidden command {command}: the lab does not allow it in jobs"
        )

    def laser_power(self, line: int, power: float) -> None:
        """A laser power above the machine's maximum."""
        if power > self.profile.laser_max_power:
            self._add(
                "Laser power",
                line,
                f"Laser power S{power:g} is above the machine's maximum S{self.profile.laser_max_power:g}",
            )

    def bad_number(self, line: int, why: str) -> None:
        """A parameter the firmware cannot take as written (NaN, infinity, exponent, out of range)."""
        self._add("Bad number", line, f"Bad number: {why}")

    def negative_extrusion(self, line: int, total_mm: float) -> None:
        """The file's net extrusion is negative: no filament figure or cost can be made of it."""
        self._add(
            "Negative extrusion",
            line,
            f"Negative extrusion: the file's net extrusion is {total_mm:.3f} mm by its last E move "
            "(it retracts more than it extrudes)",
        )

    def grbl_setting(self, line: int, write: str) -> None:
        """A GRBL settings write (`$32=`, `$N0=`, `$RST=`): a member's job may not change the machine."""
        self._add(
            "Forbidden command",
            line,
            f"Forbidden command {write}: a job may not write GRBL's settings, startup lines or defaults",
        )

    def grbl_refuses(self, line: int, code: str, why: str) -> None:
        """A line GRBL 1.1 answers with an error."""
        self._add("GRBL refuses", line, f"GRBL refuses {code[:40]!r}: {why}")

    def empty(self, lines: int) -> None:
        """The file holds no command at all (empty, or comments only): nothing a job could run."""
        what = "it is empty" if lines == 0 else f"{lines} lines of comments only"
        self._add("No commands", max(lines, 1), f"No commands: the file holds no G-code command ({what})")

    def not_text(self, line: int, why: str) -> None:
        """The file is not G-code text: reported once, at the first offending line."""
        if not self._text_done:
            self._text_done = True
            self._add("Not a text file", line, f"Not a text file: {why}")
