"""The GRBL 1.1h simulator: the pure firmware model (bytes in, bytes out) and the same over a real pty."""

from __future__ import annotations

import math
import re
import time
from pathlib import Path

import pytest
import serial

from simulators.grbl.core import GrblConfig, GrblCore
from tests.conftest import gcode_path

BANNER = "Grbl 1.1h ['$' for help]"
STATUS = re.compile(
    r"^<(?P<state>[A-Za-z]+(?::\d)?)\|MPos:(?P<pos>[-\d.,]+)"
    r"\|Bf:(?P<bf>\d+),(?P<rx>\d+)\|FS:(?P<fs>[\d.]+,[\d.]+)(?P<rest>.*)>$"
)


def replies(data: bytes) -> list[str]:
    """Non-empty reply lines."""
    return [line for line in data.decode().split("\r\n") if line]


def core(**config: object) -> GrblCore:
    config.setdefault("time_scale", 0.0)
    return GrblCore(GrblConfig(**config))  # type: ignore[arg-type]


def status(model: GrblCore, now: float) -> re.Match[str]:
    out = replies(model.feed(b"?", now))
    assert len(out) == 1, out
    match = STATUS.match(out[0])
    assert match, out[0]
    return match


# -- lines and answers ---------------------------------------------------------------------------


def test_one_answer_per_line_in_order() -> None:
    model = core()
    out = replies(model.feed(b"G21\nG90\n\n(comment only)\nG1 X10 F600\nM104 S200\nG0 Y5\n", 0.0))
    assert out == ["ok", "ok", "ok", "ok", "ok", "error:20", "ok"]
    # blank and comment-only lines are no commands
    assert model.executed == ["G21", "G90", "G1 X10 F600", "G0 Y5"]
    assert model.stats.lines_received == 7 and model.stats.errors == 1


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"G1 X", 2),  # letter without a number
        (b"1X", 1),  # number without a letter
        (b"G0 G1 X1", 21),  # two motion commands
        (b"X1 X2", 25),  # repeated word
        (b"G1 X1", 22),  # no feed rate set yet
        (b"G4", 28),  # dwell without P
        (b"G1.5 X1", 23),  # fractional G code
        (b"G0 X1 P3", 36),  # unused word
        (b"G80 X1", 31),  # axis words with motion cancelled
        (b"F-100", 4),
        (b"T300", 38),
        (b"E5", 20),  # Marlin's extruder word
        (b"G2 X10 Y0", 22),  # the feed is checked first
        (b"G2 X10 Y0 F100", 35),  # arc without offsets
        (b"$Z", 2),
        (b"$999=1", 3),
        (b"$0=2", 6),
    ],
)
def test_bad_lines_get_grbl_error_codes(line: bytes, code: int) -> None:
    assert replies(core().feed(line + b"\n", 0.0)) == [f"error:{code}"]


def test_line_longer_than_the_line_buffer_is_error_11() -> None:
    model = core()
    long_line = b"G1" + b"X1.0000000" * 8 + b"F100\n"  # 86 characters once blanks are gone
    assert replies(model.feed(long_line, 0.0)) == ["error:11"]
    assert replies(model.feed(b"G0 X1\n", 0.0)) == ["ok"]  # the next line is fine


def test_cr_lf_counts_as_two_lines() -> None:
    assert replies(core().feed(b"G21\r\n", 0.0)) == ["ok", "ok"]


def test_build_info_settings_and_modes() -> None:
    model = core()
    out = replies(model.feed(b"$I\n$32=0\n$$\n$G\n$X\n", 0.0))
    assert out[:3] == ["[VER:1.1h.20190825:]", "[OPT:V,15,128]", "ok"]
    assert out[3] == "ok"  # $32=0 stored
    settings = out[4 : out.index("ok", 4)]
    assert "$32=0" in settings and "$11=0.010" in settings and "$110=6000.000" in settings
    assert out[out.index("ok", 4) + 1 :] == ["[GC:G0 G54 G17 G21 G90 G94 M5 M9 T0 F0 S0]", "ok", "ok"]


def test_check_mode_parses_without_moving_and_resets_on_exit() -> None:
    model = core()
    assert replies(model.feed(b"$C\n", 0.0)) == ["[MSG:Enabled]", "ok"]
    assert replies(model.feed(b"G1 X50 F100\nM104\n", 0.0)) == ["ok", "error:20"]
    assert status(model, 0.0)["state"] == "Check"
    assert status(model, 0.0)["pos"] == "0.000,0.000,0.000"
    assert replies(model.feed(b"$C\n", 0.0)) == ["[MSG:Disabled]", "ok", BANNER]


# -- real-time bytes -------------------------------------------------------------------------------


def test_status_report_fields_and_wco_then_ov() -> None:
    model = core()
    first = status(model, 0.0)
    assert (first["state"], first["pos"]) == ("Idle", "0.000,0.000,0.000")
    assert (first["bf"], first["rx"]) == ("15", "128")
    assert first["rest"] == "|WCO:0.000,0.000,0.000"  # first report after a reset
    assert status(model, 0.0)["rest"] == "|Ov:100,100,100"  # the second one
    assert status(model, 0.0)["rest"] == ""


def test_status_byte_never_enters_the_rx_buffer() -> None:
    model = core()
    model.feed(b"G0 X", 0.0)  # a partial line sits in the line buffer, not in RX
    model.rx.put(ord("1"))  # type: ignore[attr-defined]
    match = status(model, 0.0)
    assert match["rx"] == "127"
    assert replies(model.feed(b"\n", 0.0)) == ["ok"]
    assert model.executed == ["G0 X1"]


def test_feed_hold_decelerates_then_holds_and_resumes() -> None:
    model = core(time_scale=1.0)
    model.feed(b"G1 X100 F600\n", 0.0)  # 10 s of motion at 10 mm/s
    assert status(model, 1.0)["state"] == "Run"
    model.feed(b"!", 1.0)
    assert status(model, 1.0)["state"] == "Hold:1"
    decel_s = 10.0 / 500.0  # 10 mm/s at $120=500 mm/s^2
    held = status(model, 1.0 + decel_s + 0.001)
    assert held["state"] == "Hold:0" and held["fs"].startswith("0,")
    x_held = float(held["pos"].split(",")[0])
    assert status(model, 5.0)["pos"].split(",")[0] == f"{x_held:.3f}"  # stands still while held
    model.feed(b"~", 5.0)
    assert status(model, 6.0)["state"] == "Run"
    assert float(status(model, 6.0)["pos"].split(",")[0]) == pytest.approx(x_held + 10.0, abs=0.01)
    assert status(model, 20.0)["state"] == "Idle"


def test_soft_reset_when_idle_prints_the_banner() -> None:
    model = core()
    model.feed(b"G0 X5\n", 0.0)
    assert replies(model.feed(b"\x18", 0.0)) == [BANNER]
    assert replies(model.feed(b"G0 X1\n", 0.0)) == ["ok"]


def test_reset_during_motion_raises_alarm_3_and_locks_until_unlock() -> None:
    model = core(time_scale=1.0)
    model.feed(b"M3 S500\nG1 X100 F600\n", 0.0)
    out = replies(model.feed(b"\x18", 2.0))
    assert out == ["ALARM:3", BANNER, "[MSG:'$H'|'$X' to unlock]"]
    assert status(model, 2.0)["state"] == "Alarm"
    assert replies(model.feed(b"G0 X0\n\x18", 2.0)) == ["error:9", BANNER, "[MSG:'$H'|'$X' to unlock]"]
    assert replies(model.feed(b"$X\nG0 X0\n", 2.0)) == ["[MSG:Caution: Unlocked]", "ok", "ok"]
    assert model.gc.modal.spindle == 5  # the reset turned the beam off


def test_homing_takes_time_and_ends_at_the_pull_off() -> None:
    model = core(time_scale=0.01)
    assert replies(model.feed(b"$H\n", 0.0)) == []  # no ok until homing is done
    assert replies(model.feed(b"?", 0.001)) == []  # GRBL ignores status requests while homing
    model.poll(0.05)
    assert replies(model.take_output()) == ["ok"]
    assert status(model, 0.05)["pos"] == "-1.000,-1.000,-1.000"


def test_jog_runs_in_jog_state_locks_gcode_and_cancels() -> None:
    model = core(time_scale=1.0)
    assert replies(model.feed(b"$J=G91 X10 F60\n", 0.0)) == ["ok"]
    assert status(model, 1.0)["state"] == "Jog"
    assert replies(model.feed(b"G0 X0\n", 1.0)) == ["error:9"]
    model.feed(b"\x85", 1.0)  # jog cancel
    assert status(model, 1.1)["state"] == "Idle"
    assert replies(model.feed(b"$G\n", 1.1))[0].startswith(
        "[GC:G0 G54 G17 G21 G90 "
    )  # the jog's G91 is not kept


def test_feed_override_shows_in_the_next_report_and_speeds_moves_up() -> None:
    model = core(time_scale=1.0)
    status(model, 0.0)  # the WCO report
    model.feed(b"\x91" * 10, 0.0)  # +10 % ten times: 200 %
    assert status(model, 0.0)["rest"] == "|Ov:200,100,100"
    model.feed(b"G1 X100 F600\n", 0.0)  # 10 s at 100 %
    assert status(model, 4.9)["state"] == "Run"
    assert status(model, 5.1)["state"] == "Idle"


def test_hold_pauses_a_dwell() -> None:
    model = core(time_scale=1.0)
    model.feed(b"G4 P2\n", 0.0)
    model.feed(b"!", 1.0)
    assert status(model, 1.0)["state"] == "Hold:0"
    assert replies(model.feed(b"", 5.0)) == []  # still dwelling: 1 s left
    model.feed(b"~", 5.0)
    assert replies(model.feed(b"", 6.1)) == ["ok"]


def test_arc_is_cut_into_chords_with_the_laser_on() -> None:
    model = core()
    out = replies(model.feed(b"G1 F600\nM3 S100\nG2 X0 Y0 I10 J0\n", 0.0))
    assert out == ["ok", "ok", "ok"]
    assert model.stats.laser_distance_mm == pytest.approx(2 * math.pi * 10, rel=1e-3)
    assert model.stats.laser_on_s == pytest.approx(2 * math.pi * 10 / 10, rel=1e-3)


def test_startup_line_runs_after_a_reset() -> None:
    model = core()
    assert replies(model.feed(b"$N0=G91\n$N\n", 0.0)) == ["ok", "$N0=G91", "$N1=", "ok"]
    assert replies(model.feed(b"\x18", 0.0)) == [BANNER, ">G91:ok"]


def test_bytes_sent_while_booting_are_lost_and_homing_lock_boots_in_alarm() -> None:
    model = core(homing_lock=True)
    model.host_opened(10.0)
    assert replies(model.feed(b"$I\n", 10.01)) == []
    assert model.stats.boot_drops == 3  # `$`, `I` and the LF
    model.poll(10.06)
    assert replies(model.take_output()) == [BANNER, "[MSG:'$H'|'$X' to unlock]"]
    assert replies(model.feed(b"G0 X1\n$H\nG0 X1\n", 10.1)) == ["error:9", "ok", "ok"]


# -- faults ----------------------------------------------------------------------------------------


def test_critical_alarm_halts_until_reset_then_stays_locked() -> None:
    model = core(alarm_at_line=2, alarm_code=1)
    out = replies(model.feed(b"G21\nG0 X5\nG0 X6\n?", 0.0))
    assert out == ["ok", "ALARM:1", "[MSG:Reset to continue]"]  # no answer to line 3, nor to `?`
    assert replies(model.feed(b"\x18", 0.0)) == [BANNER, "[MSG:'$H'|'$X' to unlock]"]
    out = replies(model.feed(b"G0 X6\n$X\nG0 X6\n", 0.0))
    assert out == ["error:9", "[MSG:Caution: Unlocked]", "ok", "ok"]
    assert model.stats.alarms == 1


def test_error_reset_and_silence_faults() -> None:
    model = core(error_at_line=2, error_code=33, reset_at_line=4)
    out = replies(model.feed(b"G21\nG0 X5\nG0 X6\nG0 X7\nG0 X8\n", 0.0))
    assert out == ["ok", "error:33", "ok", BANNER, "ok"]
    assert model.executed == ["G21", "G0 X6", "G0 X8"]
    silent = core(silence_at_line=2)
    assert replies(silent.feed(b"G21\nG21\nG21\n?\x18", 0.0)) == ["ok"]


# -- laser accounting on real CAM output --------------------------------------------------------


def _expected_laser(lines: list[str]) -> tuple[float, float, float]:
    """Laser-on seconds and mm (G1 with M3/M4 and S>0) and M3 dwell seconds, by a separate little reader."""
    x = y = 0.0
    feed = 0.0
    power = 0.0
    beam = False
    on_s = on_mm = dwell = 0.0
    for raw in lines:
        code = raw.split(";")[0].upper()
        words = dict(re.findall(r"([A-Z])\s*(-?[\d.]+)", code))
        feed = float(words.get("F", feed))
        power = float(words.get("S", power))
        if "M" in words:
            beam = words["M"] in ("3", "4") or (beam and words["M"] not in ("5", "2"))
        if words.get("G") == "4" and beam and power > 0:
            dwell += float(words["P"])
        if words.get("G") == "1" and ("X" in words or "Y" in words):
            nx, ny = float(words.get("X", x)), float(words.get("Y", y))
            dist = math.hypot(nx - x, ny - y)
            if beam and power > 0:
                on_mm += dist
                on_s += dist / feed * 60
            x, y = nx, ny
    return on_s, on_mm, dwell


def test_laser_time_and_distance_on_real_cam_lines() -> None:
    lines = gcode_path("laser-jsdc.gcode").read_text().splitlines()[:940]  # path 0 and the start of path 1
    model = core()
    data = "".join(line + "\n" for line in lines).encode()
    out = replies(model.feed(data, 0.0))
    assert out.count("ok") == len(lines)
    on_s, on_mm, dwell = _expected_laser(lines)
    assert model.stats.laser_on_s == pytest.approx(on_s, rel=1e-6)
    assert model.stats.laser_distance_mm == pytest.approx(on_mm, rel=1e-6)
    assert model.stats.laser_dwell_s == pytest.approx(dwell)
    assert dwell == 1.0 and model.stats.distance_mm > on_mm  # two dwells; the rapid in path 1 is dark


def test_flood_while_the_planner_is_full_drops_what_the_rx_buffer_cannot_hold() -> None:
    model = core(time_scale=1.0)
    moves = b"".join(b"G1 X%d F60\n" % (i + 1) for i in range(16))  # 1 s each; the 16th waits
    flood = b"G1 X1\n" * 50  # 300 bytes behind it
    out = replies(model.feed(moves + flood, 0.0))
    assert out == ["ok"] * 15
    assert model.stats.overflow_drops == len(flood) - 128
    match = status(model, 0.0)
    assert (match["bf"], match["rx"]) == ("0", "0")


# -- over a real pty ---------------------------------------------------------------------------------

def _read_until(port: object, marker: bytes, timeout: float = 3.0) -> bytes:
    deadline = time.monotonic() + timeout
    data = b""
    while marker not in data and time.monotonic() < deadline:
        data += port.read(max(1, port.in_waiting))  # type: ignore[attr-defined]
    assert marker in data, data
    return data


def _open(sim: object) -> object:
    port = serial.Serial(sim.port, 115200, timeout=0.05)  # type: ignore[attr-defined]
    _read_until(port, BANNER.encode() + b"\r\n")  # the DTR reset at open, then the banner
    return port


@pytest.mark.timeout(30)
def test_pty_character_counted_stream_gets_every_ok(tmp_path: Path) -> None:
    from simulators.grbl.simulator import GrblSimulator

    raw = gcode_path("laser-jsdc.gcode").read_text().splitlines()[:300]
    cmds = [line.split(";")[0].strip() for line in raw]
    cmds = [c for c in cmds if c]
    record = tmp_path / "executed.txt"
    with GrblSimulator(time_scale=0, record=record).start() as sim:
        port = _open(sim)
        inflight: list[int] = []
        sent = acked = 0
        buf = b""
        deadline = time.monotonic() + 20
        while acked < len(cmds) and time.monotonic() < deadline:
            while sent < len(cmds) and sum(inflight) + len(cmds[sent]) + 1 <= 128:
                port.write(cmds[sent].encode() + b"\n")  # type: ignore[attr-defined]
                inflight.append(len(cmds[sent]) + 1)
                sent += 1
            buf += port.read(max(1, port.in_waiting))  # type: ignore[attr-defined]
            while b"\r\n" in buf:
                line, buf = buf.split(b"\r\n", 1)
                if line == b"ok":
                    inflight.pop(0)
                    acked += 1
                else:
                    assert not line.startswith(b"error"), line
        port.close()  # type: ignore[attr-defined]
        assert acked == len(cmds)
        assert sim.executed == cmds
        assert record.read_text().splitlines() == cmds  # written as each line executed
        assert sim.stats.overflow_drops == 0


@pytest.mark.timeout(30)
def test_pty_flood_is_dropped_and_status_still_answered_and_reset_greets() -> None:
    from simulators.grbl.simulator import GrblSimulator

    with GrblSimulator(time_scale=1.0).start() as sim:
        port = _open(sim)
        moves = b"".join(b"G1 X%d F10\n" % (i + 1) for i in range(16))  # 6 s each: the planner fills
        flood = b"G1 X1\n" * 50
        port.write(moves + flood)  # type: ignore[attr-defined]
        _read_until(port, b"ok\r\n" * 15)
        deadline = time.monotonic() + 5
        while sim.stats.bytes_from_host < len(moves) + len(flood) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sim.stats.overflow_drops == len(flood) - 128
        port.write(b"?")  # type: ignore[attr-defined]
        report = _read_until(port, b">\r\n").decode().strip()
        assert report.startswith("<Run|") and "|Bf:0,0|" in report
        port.write(b"\x18")  # type: ignore[attr-defined]
        out = _read_until(port, b"unlock]\r\n").decode()
        assert out == f"ALARM:3\r\n\r\n{BANNER}\r\n[MSG:'$H'|'$X' to unlock]\r\n"
        port.write(b"$X\n")  # type: ignore[attr-defined]
        assert _read_until(port, b"ok\r\n") == b"[MSG:Caution: Unlocked]\r\nok\r\n"
        port.write(b"\x18")  # type: ignore[attr-defined]
        assert _read_until(port, b"help]\r\n") == f"\r\n{BANNER}\r\n".encode()  # idle: no alarm
        port.close()  # type: ignore[attr-defined]


@pytest.mark.timeout(30)
def test_pty_dropped_connection_is_an_io_error() -> None:
    from simulators.grbl.simulator import GrblSimulator

    with GrblSimulator(time_scale=0, drop_connection_at_line=2).start() as sim:
        port = _open(sim)
        port.write(b"G21\nG21\n")  # type: ignore[attr-defined]
        with pytest.raises(serial.SerialException):
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                port.read(1)  # type: ignore[attr-defined]
        assert sim.stats.connection_dropped
        port.close()  # type: ignore[attr-defined]


# -- the beam in a feed hold and behind the safety door (0x84) ------------------------------------

CUT = b"G1 X100 F600 M3 S800\n"  # 10 s of cutting at 10 mm/s, beam at S800
DECEL_S = 10.0 / 500.0  # 10 mm/s at $120=500 mm/s^2


@pytest.mark.parametrize(("laser_mode", "beam_held"), [(True, 0.0), (False, 800.0)])
def test_a_feed_hold_leaves_the_beam_on_without_laser_mode(laser_mode: bool, beam_held: float) -> None:
    model = core(time_scale=1.0, laser_mode=laser_mode)
    model.feed(CUT, 0.0)
    assert status(model, 1.0)["state"] == "Run" and model.beam_power() == 800.0
    model.feed(b"!", 1.0)
    assert status(model, 1.0 + DECEL_S + 0.001)["state"] == "Hold:0"
    assert model.beam_power() == beam_held  # $32=0: a spindle's hold, the beam burns in place


@pytest.mark.parametrize("laser_mode", [True, False])
def test_the_safety_door_turns_the_beam_off_in_either_mode_and_resumes(laser_mode: bool) -> None:
    model = core(time_scale=1.0, laser_mode=laser_mode)
    model.feed(CUT, 0.0)
    model.feed(b"\x84", 1.0)
    assert status(model, 1.0)["state"] == "Door:2"  # decelerating
    held = status(model, 1.0 + DECEL_S + 0.001)
    assert held["state"] == "Door:0" and model.beam_power() == 0.0
    assert status(model, 5.0)["pos"] == held["pos"]  # stands still, beam off
    model.feed(b"!", 5.0)  # a feed hold does not undo the door
    assert status(model, 5.0)["state"] == "Door:0" and model.beam_power() == 0.0
    model.feed(b"~", 5.0)  # the lid closed: cycle start
    assert status(model, 6.0)["state"] == "Run" and model.beam_power() == 800.0
    done = status(model, 20.0)
    assert done["state"] == "Idle" and done["pos"].startswith("100.000,")


def test_the_safety_door_during_a_hold_supersedes_it_and_cancels_a_jog() -> None:
    model = core(time_scale=1.0, laser_mode=False)
    model.feed(CUT, 0.0)
    model.feed(b"!", 1.0)
    assert status(model, 2.0)["state"] == "Hold:0" and model.beam_power() == 800.0
    model.feed(b"\x84", 2.0)
    assert status(model, 2.0)["state"] == "Door:0" and model.beam_power() == 0.0
    jog = core(time_scale=1.0)
    jog.feed(b"$J=X50 F600\n", 0.0)
    jog.feed(b"\x84", 1.0)
    assert status(jog, 1.0)["state"] == "Door:0"  # the jog and its queue are dropped
    jog.feed(b"~", 1.0)
    assert status(jog, 1.0)["state"] == "Idle"
