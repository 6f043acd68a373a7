"""GRBL 1.1h's reports: the `?` status line (with WCO/Ov refresh counters), `$$`, `$#`, `$I`, `$N`.

Field order as report.c prints it: state, MPos/WPos, Bf (if `$10` bit 1), FS, WCO, Ov (+A).
WCO appears in the first report after a reset, then every 10 reports (30 while busy) or at once when
an offset changed; Ov in the second report, then every 10 (20 while busy) or at once after an
override changed, but never in the same report as WCO.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simulators.grbl import codes as C

if TYPE_CHECKING:
    from simulators.grbl.board import Board

WCO_IDLE, WCO_BUSY = 10, 30
OVR_IDLE, OVR_BUSY = 10, 20


def axes(values: tuple[float, ...] | list[float], inches: bool = False) -> str:
    """x,y,z with 3 decimals (4 in inches) as GRBL prints positions."""
    if inches:
        return ",".join(f"{v / 25.4:.4f}" for v in values)
    return ",".join(f"{v:.3f}" for v in values)


class StatusReporter:
    """Builds `<...>` status reports for one core, keeping GRBL's refresh counters."""

    def __init__(self, core: Board) -> None:
        self.core = core
        self.reset()

    def reset(self) -> None:
        """After a reset the first report carries WCO and the second Ov."""
        self.wco_counter = 0
        self.ovr_counter = 0

    def override_changed(self) -> None:
        """An override moved: show Ov in the next report."""
        self.ovr_counter = 0

    def request(self) -> None:
        """`?` arrived; GRBL ignores it during homing and after a critical alarm."""
        core = self.core
        if core.homing_left is not None or core.critical:
            return
        core.stats.status_reports += 1
        core.out += (self.build() + "\r\n").encode()

    def state(self) -> str:
        """The machine state word with its sub-state (Hold:0, Door:0, ...)."""
        core = self.core
        planner = core.planner
        if core.sleeping:
            return "Sleep"
        if core.alarm:
            return "Alarm"
        if core.homing_left is not None:
            return "Home"
        if core.door:
            return "Door:2" if planner.hold == "decel" else "Door:0"
        if planner.hold:
            return "Hold:1" if planner.hold == "decel" else "Hold:0"
        if core.check_mode:
            return "Check"
        if planner.busy:
            return "Jog" if planner.blocks[0].jog else "Run"
        return "Idle"

    def build(self) -> str:
        """One status report line without its CR LF."""
        core = self.core
        mask = int(core.settings[10])
        inches = bool(core.settings[13])
        pos = core.planner.position()
        if core.gc.wco_changed:
            core.gc.wco_changed = False
            self.wco_counter = 0
        parts = [self.state()]
        if mask & 1:
            parts.append("MPos:" + axes(pos, inches))
        else:
            wco = core.gc.wco()
            parts.append("WPos:" + axes([p - w for p, w in zip(pos, wco, strict=True)], inches))
        if mask & 2:
            parts.append(f"Bf:{core.planner.free()},{core.config.rx_buffer - core.rx.rx_available()}")
        rate = core.planner.current_rate() / (25.4 if inches else 1.0)
        parts.append(f"FS:{rate:.0f},{self._spindle():.0f}")
        parts += self._intermittent()
        return "<" + "|".join(parts) + ">"

    def _busy(self) -> bool:
        core = self.core
        return core.planner.busy or core.homing_left is not None

    def _intermittent(self) -> list[str]:
        out: list[str] = []
        busy = self._busy()
        if self.wco_counter > 0:
            self.wco_counter -= 1
        else:
            self.wco_counter = (WCO_BUSY if busy else WCO_IDLE) - 1
            if self.ovr_counter == 0:
                self.ovr_counter = 1  # Ov waits for the next report
            out.append("WCO:" + axes(self.core.gc.wco(), bool(self.core.settings[13])))
        if self.ovr_counter > 0:
            self.ovr_counter -= 1
        else:
            self.ovr_counter = (OVR_BUSY if busy else OVR_IDLE) - 1
            out += self._overrides()
        return out

    def _overrides(self) -> list[str]:
        core = self.core
        p = core.planner
        out = [f"Ov:{p.feed_ovr},{p.rapid_ovr},{core.spindle_ovr}"]
        accessories = ""
        if core.gc.modal.spindle == 3:
            accessories += "S"
        elif core.gc.modal.spindle == 4:
            accessories += "C"
        if core.gc.modal.flood:
            accessories += "F"
        if accessories:
            out.append("A:" + accessories)
        return out

    def _spindle(self) -> float:
        """The S being output: the running block's power, or the programmed S while M3/M4 is on."""
        core = self.core
        if core.planner.moving:
            return core.planner.blocks[0].power * core.spindle_ovr / 100
        if core.gc.modal.spindle in (3, 4):
            return core.gc.modal.speed * core.spindle_ovr / 100
        return 0.0


def beam_power(core: Board) -> float:
    """The laser output now (S units, 0: off), as GRBL 1.1 drives the spindle PWM pin.

    The safety door (0x84) de-energizes once motion stopped whatever `$32` says. With `$32=0` the
    output is a spindle's: on with M3/M4 and S>0, through a feed hold too ("a feed hold does not
    disable the spindle", gnea/grbl doc/markdown/commands.md). With `$32=1` it burns while a powered
    G1/G2/G3 block runs, is off during a hold (config.h DISABLE_LASER_DURING_HOLD), and at a stop stays
    on only for M3 in a G1/G2/G3 mode (doc/markdown/laser_mode.md: M4 and G0 never light a still beam).
    """
    planner, modal = core.planner, core.gc.modal
    if core.alarm or core.sleeping or core.check_mode or core.homing_left is not None:
        return 0.0
    if core.door and not planner.moving:
        return 0.0
    # the parser runs ahead of the machine: while blocks are queued, the running one tells the output
    programmed = modal.speed * core.spindle_ovr / 100 if modal.spindle in (3, 4) and modal.speed > 0 else 0.0
    if not core.settings[32]:
        return planner.blocks[0].spindle * core.spindle_ovr / 100 if planner.busy else programmed
    if planner.moving:
        return planner.blocks[0].power * core.spindle_ovr / 100
    if planner.hold or modal.spindle != 3 or modal.motion not in (1, 2, 3):
        return 0.0
    return programmed


def settings_lines(core: Board) -> list[str]:
    """`$$`: every setting, one per line."""
    return [C.format_setting(n, core.settings[n]) for n in sorted(core.settings)]


def parameter_lines(core: Board) -> list[str]:
    """`$#`: work offsets, G28/G30, G92, TLO, last probe."""
    p = core.persistent
    lines = [f"[G{54 + i}:{axes(cs)}]" for i, cs in enumerate(p.coords)]
    lines += [f"[G28:{axes(p.g28)}]", f"[G30:{axes(p.g30)}]", f"[G92:{axes(core.gc.g92)}]"]
    lines += [f"[TLO:{core.gc.tlo:.3f}]", "[PRB:0.000,0.000,0.000:0]"]
    return lines


def build_info_lines(core: Board) -> list[str]:
    """`$I`: version, build date, the user's string; options, planner blocks, RX buffer size."""
    cfg = core.config
    return [
        f"[VER:{C.VERSION}.{C.BUILD_DATE}:{core.build_info}]",
        f"[OPT:V,{cfg.planner_blocks - 1},{cfg.rx_buffer}]",
    ]
