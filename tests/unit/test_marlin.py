"""MarlinHost, bytes in and events out: framing, flow control, resends, timers, faults, job control."""

from __future__ import annotations

import pytest

from drivers.events import (
    CommandReply,
    FirmwareBusy,
    FirmwareMessage,
    FirmwareReady,
    HostActionRequested,
    JobCancelled,
    JobCompleted,
    JobFailed,
    JobState,
    JobStateChanged,
    LineAcked,
    ResendRequested,
    Temperatures,
)
from drivers.marlin.host import JobStateError, MarlinHost

OK_T = b"ok T:210.0 /210.0 B:60.0 /60.0 @:127 B@:0\n"


def xor(text: str) -> int:
    """The checksum as Marlin computes it, written here independently of drivers.marlin.wire."""
    value = 0
    for char in text:
        value ^= ord(char)
    return value


def numbered(n: int, command: str) -> bytes:
    body = f"N{n} {command}"
    return f"{body}*{xor(body)}\n".encode()


def of(events: list, kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


def started(lines: list[str], **kwargs) -> tuple[MarlinHost, bytes]:
    """A host past the M110 handshake (no M155 asked); returns what it sent next."""
    kwargs.setdefault("temperature_interval_s", 0)
    host = MarlinHost(**kwargs)
    host.start_job(lines, 0.0)
    assert host.data_to_send(0.0) == numbered(0, "M110 N0")
    host.receive(b"ok\n", 0.1)
    return host, host.data_to_send(0.1)


def lines_of(data: bytes) -> list[bytes]:
    return [line + b"\n" for line in data.split(b"\n") if line]


def answers(data: bytes) -> bytes:
    """What a healthy Marlin says to these lines: `ok`, or `ok T:...` to M105."""
    return b"".join(OK_T if b"M105" in line else b"ok\n" for line in lines_of(data))


# -- framing and the start of a job --------------------------------------------------------------


def test_job_starts_with_numbered_m110_and_waits_for_its_ok():
    host = MarlinHost()
    host.start_job(["G28"], 0.0)
    assert host.poll(0.0) == [JobStateChanged(JobState.RUNNING)]
    assert host.data_to_send(0.0) == b"N0 M110 N0*125\n" == numbered(0, "M110 N0")
    assert host.data_to_send(0.0) == b""  # job lines wait until Marlin took the new numbering


def test_job_lines_are_numbered_with_xor_checksum_skipping_comments_and_blanks():
    _, sent = started(["G28 ; home", "", "; layer 1", "G1 X10 Y20 F3000", "M104 S200"])
    assert sent == (
        numbered(1, "G28") + numbered(2, "G1X10Y20F3000") + numbered(3, "M104S200") + numbered(4, "M105")
    )
    assert sent.startswith(b"N1 G28*18\n")


def test_m155_auto_report_is_asked_once_m110_is_taken():
    host = MarlinHost(temperature_interval_s=2.0)
    host.start_job(["G28"], 0.0)
    host.data_to_send(0.0)
    host.receive(b"ok\n", 0.1)
    assert host.data_to_send(0.1) == b"M155 S2\n" + numbered(1, "G28") + numbered(2, "M105")


def test_m110_lost_to_a_booting_board_is_sent_again_on_silence():
    host = MarlinHost(temperature_interval_s=0)
    host.start_job(["G28"], 0.0)
    m110 = host.data_to_send(0.0)
    # The board was still in its bootloader: M110 is gone, and nothing answers.
    assert of(host.poll(10.6), JobFailed) == []
    assert host.data_to_send(10.6) == m110
    host.receive(b"ok\n", 10.7)
    assert host.data_to_send(10.7) == numbered(1, "G28") + numbered(2, "M105")


def test_acknowledged_lines_report_file_line_numbers_and_totals_then_completion():
    file = ["; sliced", "G28", "", "G1 X1", "G1 X2 ; move"]
    host, sent = started(file)
    *frames, closing = lines_of(sent)
    assert closing == numbered(4, "M105")  # answered by `ok T:` only: proves every line before it ran
    events = host.receive(b"ok\nok\nok\n", 1.0)
    sizes = [len(f) for f in frames]
    assert of(events, LineAcked) == [
        LineAcked(2, 1, sizes[0]),
        LineAcked(4, 2, sizes[0] + sizes[1]),
        LineAcked(5, 3, sum(sizes)),
    ]
    assert of(events, JobCompleted) == []
    events = host.receive(OK_T, 1.1)
    assert of(events, JobCompleted) == [JobCompleted(lines=3, bytes=sum(sizes), resends=0)]
    assert JobStateChanged(JobState.COMPLETED) in events
    assert host.job_state == JobState.COMPLETED


def test_an_empty_job_completes_once_m110_is_acknowledged():
    host = MarlinHost(temperature_interval_s=0)
    host.start_job(["; nothing but comments", ""], 0.0)
    host.data_to_send(0.0)
    host.receive(b"ok\n", 0.1)
    assert host.data_to_send(0.1) == numbered(1, "M105")
    assert of(host.receive(OK_T, 0.2), JobCompleted) == [JobCompleted(0, 0, 0)]


def test_a_stray_ok_cannot_complete_a_job_whose_last_line_did_not_run():
    host, _ = started(["G28", "G1 X1"])
    # Noise hit line 2's N: Marlin ran garbage (`ok` and all) instead, then refused nothing.
    events = host.receive(b'ok\necho:Unknown command: "X2 G1 X1"\nok\n', 1.0)
    assert [e.line_no for e in of(events, LineAcked)] == [1]
    # Even an `ok` nobody can explain cannot end the job: only the closing M105's `ok T:` can.
    events = host.receive(b"ok\nok\n", 1.1)
    assert of(events, JobCompleted) == []
    assert of(host.receive(OK_T, 1.2), JobCompleted)


def test_a_second_job_cannot_start_while_one_runs():
    host, _ = started(["G28"])
    with pytest.raises(JobStateError, match="running"):
        host.start_job(["G28"], 1.0)


# -- flow control ---------------------------------------------------------------------------------


def test_unacknowledged_bytes_stay_within_the_rx_window():
    file = [f"G1 X{i}.123 Y{i}.456 E0.0123" for i in range(40)]
    host, sent = started(file)
    assert len(sent) <= 127 < len(sent) + len(numbered(len(lines_of(sent)) + 1, file[len(lines_of(sent))]))
    in_flight = lines_of(sent)
    for t in range(1, 30):
        host.receive(b"ok\n", float(t))
        in_flight = in_flight[1:] + lines_of(host.data_to_send(float(t)))
        assert sum(map(len, in_flight)) <= 127


def test_a_line_longer_than_the_window_goes_alone():
    long_line = "G1 X1.00000 Y2.00000 Z3.00000 E4.00000 F1200 ; sent compact: G1X1Y2Z3E4F1200"
    host, sent = started(["G28", long_line, "G28"], rx_window_bytes=21)
    assert sent == numbered(1, "G28")
    host.receive(b"ok\n", 1.0)
    assert host.data_to_send(1.0) == numbered(2, "G1X1Y2Z3E4F1200")
    assert host.data_to_send(1.0) == b""
    host.receive(b"ok\n", 2.0)
    assert host.data_to_send(2.0) == numbered(3, "G28") + numbered(4, "M105")


def test_advanced_ok_counts_lines_in_the_command_queue_out_of_the_rx_window():
    file = [f"G1 X{i:03d}" for i in range(1, 30)]  # 16-18 bytes each
    host = MarlinHost(rx_window_bytes=60, temperature_interval_s=0)
    host.start_job(file, 0.0)
    host.data_to_send(0.0)
    host.receive(b"ok N0 P15 B3\n", 0.1)  # idle: 3 free slots besides the line just run
    first = lines_of(host.data_to_send(0.1))
    assert sum(map(len, first)) <= 60
    # Line 1 ran; two lines wait in the command queue (B1): they left the RX buffer.
    host.receive(b"ok N1 P14 B1\n", 0.2)
    more = lines_of(host.data_to_send(0.2))
    in_flight = first[1:] + more
    in_queue = sum(map(len, in_flight[:2]))
    assert sum(map(len, in_flight)) > 60  # more in flight than the plain window allows
    assert sum(map(len, in_flight)) - in_queue <= 60  # yet the RX buffer cannot overflow
    # The queue drained (B3): nothing is known to be out of RX, so nothing more may go.
    host.receive(b"ok N2 P15 B3\n", 0.3)
    assert host.data_to_send(0.3) == b""


def test_plain_oks_do_not_use_buffer_counts_when_advanced_ok_is_off():
    file = [f"G1 X{i:03d}" for i in range(1, 30)]
    host, first = started(file, rx_window_bytes=60, use_advanced_ok=False)
    host.receive(b"ok N1 P14 B1\n", 0.2)
    in_flight = lines_of(first)[1:] + lines_of(host.data_to_send(0.2))
    assert sum(map(len, in_flight)) <= 60


# -- resends ----------------------------------------------------------------------------------------


QUIET = 0.25  # MarlinHost's quiet_after_error_s: how long a quiet link ends the wait after a refusal
# These tests are about what is sent again, so the host keeps pipelining after a refusal; one line at
# a time after it (drivers.marlin.caution) is tested on its own below.
PIPELINED = {"single_line_after_error": 0}


def refusal(last: int, error: str = "Line Number is not Last Line Number+1", ok: bool = True) -> bytes:
    return f"Error:{error}, Last Line: {last}\nResend: {last + 1}\n{'ok' if ok else ''}\n".encode()


def test_a_resend_is_answered_once_from_n_and_duplicates_and_their_oks_are_ignored():
    file = ["G28", "G1 X1", "G1 X2", "G1 X3", "G1 X4"]
    host, sent = started(file, **PIPELINED)
    original = lines_of(sent)
    assert len(original) == 6  # five lines and the closing M105
    events = host.receive(b"ok\n" + refusal(1, "checksum mismatch"), 1.0)
    assert of(events, LineAcked) == [LineAcked(1, 1, len(original[0]))]
    assert of(events, ResendRequested) == [ResendRequested(2, "Error:checksum mismatch, Last Line: 1")]
    # Lines 3 to 6 still arrive, each refused and each refusal flushing Marlin's RX buffer: a line
    # sent now could be cut by one of those flushes, so nothing goes until they are answered.
    assert host.data_to_send(1.0) == b""
    events = host.receive(refusal(1) * 4, 1.01)
    assert events == []
    assert host.data_to_send(1.01) == b"".join(original[1:])  # the same bytes, from line 2
    events = host.receive(b"ok\n" * 4 + OK_T, 1.2)
    assert [e.line_no for e in of(events, LineAcked)] == [2, 3, 4, 5]
    assert of(events, JobCompleted) == [JobCompleted(5, sum(map(len, original[:5])), resends=1)]


def test_the_ok_of_a_cut_tail_that_ran_acknowledges_no_line_and_its_unknown_fragment_neither():
    host, sent = started(["G28", "G1 X1", "G1 X2", "G1 X3"], **PIPELINED)
    frames = lines_of(sent)  # N1..N4 and the closing M105 (N5)
    # Line 2 refused; Marlin's flush cut line 3, whose tail `G1X2*..` ran as a command of its own
    events = host.receive(b"ok\n" + refusal(1, "checksum mismatch") + b"ok\n", 1.0)
    assert [e.line_no for e in of(events, LineAcked)] == [1]
    # line 4 refused, and the flush cut the closing M105 into an unknown fragment
    events = host.receive(refusal(1) + b'echo:Unknown command: "105"\nok\n', 1.01)
    assert of(events, LineAcked) == []
    assert host.data_to_send(1.01) == b"".join(frames[1:])  # every stale line answered: from line 2


def test_rs_is_a_resend_request_too():
    host, sent = started(["G28", "G1 X1"])
    host.receive(b"ok\nrs 2\nok\n", 1.0)
    # not Marlin's refusal (no `Last Line:`): no RX flush to wait out, sent again at once
    assert host.data_to_send(1.0) == b"".join(lines_of(sent)[1:])


def test_a_resend_waits_while_lines_marlin_took_are_unanswered():
    # Marlin reads its RX buffer only as its queue frees: stale lines may still wait there.
    host, sent = started(["G28", "G1 X1", "G1 X2"], **PIPELINED)
    host.receive(refusal(2), 1.0)  # lines 1 and 2 taken, their `ok`s not yet come
    assert host.data_to_send(1.0 + 10 * QUIET) == b""
    host.receive(b"ok\nok\n", 1.5)
    assert host.data_to_send(1.5 + QUIET) == b"".join(lines_of(sent)[2:])


def test_a_resend_without_its_ok_does_not_stall_the_stream():
    file = ["G28", "G1 X1", "G1 X2"]
    host, sent = started(file, **PIPELINED)
    host.receive(b"ok\n" + refusal(1, "checksum mismatch", ok=False), 1.0)
    assert host.data_to_send(1.0 + QUIET) == b"".join(lines_of(sent)[1:])
    # The first `ok` is taken for the missing one; the closing M105's answer settles it.
    events = host.receive(b"ok\nok\n" + OK_T, 1.5)
    assert [e.line_no for e in of(events, LineAcked)] == [2, 3]
    assert of(events, JobCompleted)


def test_requests_for_earlier_lines_than_one_answered_are_ignored():
    host, sent = started(["G28", "G1 X1", "G1 X2", "G1 X3"], **PIPELINED)
    host.receive(b"ok\nok\n" + refusal(2), 1.0)
    assert host.data_to_send(1.0 + QUIET) == b"".join(lines_of(sent)[2:])
    assert host.receive(refusal(1), 1.1) == []
    assert host.data_to_send(1.1 + QUIET) == b""


def test_a_resent_line_refused_again_is_sent_again():
    host, sent = started(["G28", "G1 X1", "G1 X2"], **PIPELINED)
    frames = lines_of(sent)
    host.receive(refusal(0, "checksum mismatch"), 1.0)
    assert host.data_to_send(1.0) == b""
    # Lines 2 to 4 of the first sending are refused: stale; once they are answered, line 1 goes again.
    host.receive(refusal(0) * 3, 1.1)
    assert host.data_to_send(1.1) == b"".join(frames)
    # Then the resent line 1 is refused: that request is new.
    events = host.receive(refusal(0, "checksum mismatch"), 1.2)
    assert of(events, ResendRequested) == [ResendRequested(1, "Error:checksum mismatch, Last Line: 0")]
    host.receive(refusal(0) * 3, 1.21)
    assert host.data_to_send(1.21) == b"".join(frames)
    events = host.receive(b"ok\n" * 3 + OK_T, 1.3)
    assert host.resends == 2
    assert of(events, JobCompleted) == [JobCompleted(3, sum(map(len, frames[:3])), 2)]


def test_after_a_refusal_lines_go_one_at_a_time_until_the_link_was_clean_for_a_while():
    # A line Marlin may still refuse never shares the wire with the next: its flush cuts nothing.
    file = [f"G1 X{i}" for i in range(1, 11)]
    host, sent = started(file, single_line_after_error=3)
    frames = lines_of(sent)
    assert len(frames) > 3  # pipelined on a clean link
    host.receive(b"ok\n" + refusal(1, "checksum mismatch"), 1.0)
    host.receive(refusal(1) * (len(frames) - 2), 1.01)  # the stale lines behind it, each refused
    assert host.single_line
    assert host.data_to_send(1.01) == frames[1]  # line 2 again, alone
    assert host.data_to_send(1.02) == b""
    host.receive(b"ok\n", 1.03)
    assert host.data_to_send(1.03) == frames[2]
    host.receive(b"ok\n", 1.04)
    assert host.data_to_send(1.04) == frames[3]
    host.receive(b"ok\n", 1.05)  # three lines taken in a row without a refusal: pipelined again
    assert not host.single_line
    assert lines_of(host.data_to_send(1.05)) == frames[4:]


def test_one_at_a_time_a_line_that_got_no_answer_costs_a_poke_not_the_job():
    host, sent = started(["G28", "G1 X1", "G1 X2"], single_line_after_error=100, poke_after_s=2.0)
    frames = lines_of(sent)
    host.receive(refusal(0, "checksum mismatch"), 1.0)
    host.receive(refusal(0) * (len(frames) - 1), 1.01)
    assert host.data_to_send(1.01) == frames[0]
    # line 1 was lost on the wire (no answer at all): after the silence it goes again, alone
    host.poll(3.02)
    assert host.data_to_send(3.02) == frames[0]
    events = host.receive(b"ok\n", 3.1)
    assert [e.line_no for e in of(events, LineAcked)] == [1]
    assert host.data_to_send(3.1) == frames[1]  # still one at a time
    events = host.receive(b"ok\n", 3.2)
    assert [e.line_no for e in of(events, LineAcked)] == [2]
    assert host.data_to_send(3.2) == frames[2]


def test_one_at_a_time_a_line_whose_n_was_hit_is_asked_after_at_once():
    host, sent = started(["G28", "G1 X1", "G1 X2"], single_line_after_error=100)
    frames = lines_of(sent)
    host.receive(refusal(0, "checksum mismatch"), 1.0)
    host.receive(refusal(0) * (len(frames) - 1), 1.01)
    assert host.data_to_send(1.01) == frames[0]
    # noise turned `N1` into `J1`: an unknown command, and no later line on the wire to be refused
    host.receive(b'echo:Unknown command: "J1G28"\nok\n', 1.02)
    assert host.data_to_send(1.02) == frames[0]  # at once, not after poke_after_s
    events = host.receive(b"ok\n", 1.03)
    assert [e.line_no for e in of(events, LineAcked)] == [1]


def test_one_at_a_time_an_ok_that_noise_hit_still_counts():
    file = [f"G1 X{i}" for i in range(1, 8)]
    host, sent = started(file, single_line_after_error=100)
    frames = lines_of(sent)
    host.receive(b"ok\n" + refusal(1, "checksum mismatch"), 1.0)
    host.receive(refusal(1) * (len(frames) - 2), 1.01)
    assert host.data_to_send(1.01) == frames[1]
    host.receive(b"ok\n", 1.02)
    assert host.data_to_send(1.02) == frames[2]
    events = host.receive(b"oj\n", 1.03)  # line 3's `ok`, one bit flipped: the only line it can be
    assert of(events, FirmwareMessage) == [FirmwareMessage("oj")]
    assert [e.line_no for e in of(events, LineAcked)] == [3]
    assert host.data_to_send(1.03) == frames[3]  # not after poke_after_s


def test_pipelining_a_line_that_may_be_a_hit_ok_acknowledges_nothing_but_asks():
    # Several lines on the wire: counted as an `ok` by mistake, it would over-credit the RX window;
    # left alone, each lost `ok` would keep its line's bytes in the window until the job stalls.
    host, sent = started([f"G1 X{i}" for i in range(1, 40)])
    frames = lines_of(sent)
    events = host.receive(b"oj\n", 1.0)
    assert of(events, FirmwareMessage) == [FirmwareMessage("oj")]
    assert of(events, LineAcked) == []
    assert host.data_to_send(1.0) == numbered(len(frames) + 1, "M105")  # in the room kept for it
    # Marlin ran the other lines, then the M105: its `ok T:` confirms every line before it
    events = host.receive(b"ok\n" * (len(frames) - 1) + OK_T, 1.1)
    assert [e.line_no for e in of(events, LineAcked)] == list(range(1, len(frames) + 1))


def test_firmware_that_keeps_its_rx_buffer_is_not_slowed_by_a_refusal():
    # `Error: expected line 2 got 3` (OctoPrint's virtual printer): no flush, so no line is cut
    host, sent = started(["G28", "G1 X1", "G1 X2", "G1 X3"])
    frames = lines_of(sent)
    host.receive(b"ok\nError: expected line 2 got 3\nResend:2\nok\n", 1.0)
    assert not host.single_line
    assert lines_of(host.data_to_send(1.0 + QUIET)) == frames[1:]  # from line 2, all at once


def test_a_refusal_whose_resend_line_noise_hit_is_answered_all_the_same():
    host, sent = started(["G28", "G1 X1", "G1 X2"], **PIPELINED)
    frames = lines_of(sent)
    host.send_command("M114")
    assert host.data_to_send(0.2) == b"M114\n"
    events = host.receive(b"ok\nError:checksum mismatch, Last Line: 1\nResenl: 2\nok\n", 1.0)
    assert of(events, ResendRequested) == [ResendRequested(2, "Error:checksum mismatch, Last Line: 1")]
    assert of(events, LineAcked) == [LineAcked(1, 1, len(frames[0]))]
    assert of(events, CommandReply) == []  # the refusal's `ok` is not the M114's
    host.receive(refusal(1) * (len(frames) - 2), 1.01)
    assert host.data_to_send(1.01) == b"".join(frames[1:])


def test_a_refused_m110_is_sent_again():
    host = MarlinHost(temperature_interval_s=0)
    host.start_job(["G28"], 0.0)
    m110 = host.data_to_send(0.0)
    host.receive(refusal(4711, "checksum mismatch"), 0.1)  # Marlin still counts from a past job
    assert host.data_to_send(0.1) == m110
    host.receive(b"ok\n", 0.2)
    assert host.data_to_send(0.2) == numbered(1, "G28") + numbered(2, "M105")


# -- temperatures, busy, silence --------------------------------------------------------------------


def test_ok_with_temperatures_reports_them():
    host = MarlinHost()
    assert host.receive(OK_T, 0.0) == [Temperatures({"T": (210.0, 210.0), "B": (60.0, 60.0)})]


def test_auto_reports_with_several_heaters_and_heat_waits_report_temperatures():
    host = MarlinHost()
    auto = b" T:200.1 /210.0 B:59.0 /60.0 T0:200.1 /210.0 T1:25.0 /0.0 C:30.2 /35.0 P:28.5 @:127 B@:0\n"
    [report] = host.receive(auto, 0.0)
    assert report.readings == {
        "T": (200.1, 210.0),
        "B": (59.0, 60.0),
        "T0": (200.1, 210.0),
        "T1": (25.0, 0.0),
        "C": (30.2, 35.0),
        "P": (28.5, None),
    }
    assert host.receive(b"T:187.3 E:0 W:?\n", 1.0) == [Temperatures({"T": (187.3, None)})]


@pytest.mark.parametrize(
    "line", ["echo:busy: processing", "echo:busy: paused for user", "busy: paused for user"]
)
def test_busy_is_reported(line):
    assert MarlinHost().receive(line.encode() + b"\n", 0.0) == [FirmwareBusy(line)]


def test_busy_keeps_a_long_command_alive_without_pokes_or_failure():
    host, _ = started(["M109 S210", "G28"])
    for t in range(2, 200, 2):  # Marlin's host keepalive while M109 waits
        host.receive(b"echo:busy: processing\n", float(t))
        assert host.poll(float(t) + 1.0) == []
        assert host.data_to_send(float(t) + 1.0) == b""
    assert host.job_state == JobState.RUNNING


def test_silence_asks_a_numbered_m105_within_the_window_whose_answer_acknowledges_lost_oks():
    host, sent = started(["G28", "G1 X1"] * 20)
    assert len(sent) <= 127 - 12  # job lines leave room for the poke
    assert host.next_deadline() == pytest.approx(0.1 + 1.0)  # a second without `ok`
    assert host.poll(0.6) == [] and host.data_to_send(0.6) == b""
    host.poll(1.2)
    n = len(lines_of(sent)) + 1
    poke = host.data_to_send(1.2)
    assert poke == numbered(n, "M105")
    assert len(sent) + len(poke) <= 127  # lost oks and a blocked printer look the same: stay within
    events = host.receive(OK_T, 10.3)  # every line sent ran; their oks were lost
    assert [e.acked_lines for e in of(events, LineAcked)] == list(range(1, n))
    assert host.data_to_send(10.3).startswith(numbered(n + 1, ["G28", "G1X1"][(n - 1) % 2]))


def test_an_m105_answer_that_noise_hit_in_its_ok_still_acknowledges_the_lines_before_it():
    host, sent = started(["G28", "G1 X1"] * 20)
    host.poll(1.2)
    n = len(lines_of(sent)) + 1
    assert host.data_to_send(1.2) == numbered(n, "M105")
    events = host.receive(b"oK" + OK_T[2:], 1.3)  # only an M105's answer reads `.. T:`
    assert [e.acked_lines for e in of(events, LineAcked)] == list(range(1, n))
    assert of(events, Temperatures)


def test_temperature_reports_do_not_stop_pokes_but_keep_the_job_alive():
    host, _ = started(["G28"])
    sent = b""
    for t in range(1, 120):
        host.receive(b" T:20.0 /0.0 B:20.0 /0.0 @:0 B@:0\n", float(t))
        host.poll(float(t))
        sent += host.data_to_send(float(t))
    # The second poke sends again from the oldest unacknowledged line, in place of what is on the
    # wire: never a second M105 beyond the window.
    again = numbered(1, "G28") + numbered(2, "M105") + numbered(3, "M105")
    assert sent.startswith(numbered(3, "M105") + again)
    assert host.job_state == JobState.RUNNING


def test_no_answer_at_all_fails_the_job():
    host, _ = started(["G28"])
    host.poll(10.2)
    assert host.data_to_send(10.2) == numbered(3, "M105")
    assert host.next_deadline() == pytest.approx(10.2 + 30.0)  # unanswered: ask again, less often
    host.poll(40.2)
    assert host.data_to_send(40.2) == numbered(1, "G28") + numbered(2, "M105") + numbered(3, "M105")
    assert host.next_deadline() == pytest.approx(0.1 + 60.0)
    events = host.poll(60.2)
    assert of(events, JobFailed) == [JobFailed("no_answer", of(events, JobFailed)[0].reason, 0)]
    assert "did not answer" in of(events, JobFailed)[0].reason
    assert host.job_state == JobState.FAILED
    assert host.next_deadline() is None


# -- resets and faults ------------------------------------------------------------------------------


def test_start_during_a_job_means_the_printer_reset_and_the_job_is_lost():
    host, _ = started(["G28", "G1 X1"])
    host.receive(b"ok\n", 1.0)
    events = host.receive(b"start\necho:Marlin 2.1.2\n", 2.0)
    assert events[0] == FirmwareReady("start")
    [failed] = of(events, JobFailed)
    assert failed.kind == "reset" and failed.last_line_no == 1
    assert "reset" in failed.reason and "lost" in failed.reason
    assert host.job_state == JobState.FAILED
    assert host.data_to_send(2.0) == b""


def test_start_while_idle_is_only_a_greeting():
    assert MarlinHost().receive(b"start\n", 0.0) == [FirmwareReady("start")]


def test_kill_fails_the_job_as_halted():
    host, _ = started(["G28"])
    events = host.receive(b"Error:Printer halted. kill() called!\n", 1.0)
    reason = "the printer halted: Error:Printer halted. kill() called!"
    assert of(events, JobFailed) == [JobFailed("halted", reason, 0)]


@pytest.mark.parametrize(
    "line",
    [
        "Error:Thermal Runaway, system stopped! Heater_ID: 0",
        "Error:MAXTEMP triggered, system stopped! Heater_ID: 0",
        "Error:MINTEMP triggered, system stopped! Heater_ID: bed",
        "Error:Heating failed, system stopped! Heater_ID: 0",
    ],
)
def test_thermal_faults_fail_the_job_with_the_firmware_words(line):
    host, _ = started(["G28"])
    events = host.receive(f"{line}\nError:Printer halted. kill() called!\n".encode(), 1.0)
    [failed] = of(events, JobFailed)
    assert failed.kind == "thermal" and line in failed.reason


def test_other_errors_and_messages_are_passed_on():
    host = MarlinHost()
    data = b'echo:Unknown command: "M999x"\nError:Probing Failed\n//action:notification hi\n'
    events = host.receive(data, 0.0)
    assert events == [
        FirmwareMessage('echo:Unknown command: "M999x"'),
        FirmwareMessage("Error:Probing Failed"),
        FirmwareMessage("//action:notification hi"),
    ]


# -- pause, resume, cancel, host actions --------------------------------------------------------


def test_pause_sends_nothing_more_until_resume():
    file = [f"G1 X{i:03d} Y{i:03d} E0.01" for i in range(20)]
    host, sent = started(file)
    host.pause(1.0)
    assert host.poll(1.0) == [JobStateChanged(JobState.PAUSING)]
    n = len(lines_of(sent))
    events = host.receive(b"ok\n" * (n - 1), 1.1)
    assert host.data_to_send(1.1) == b""
    assert JobStateChanged(JobState.PAUSED) not in events
    events = host.receive(b"ok\n", 1.2)
    assert JobStateChanged(JobState.PAUSED) in events
    assert host.data_to_send(1.3) == b""
    host.resume(2.0)
    assert host.data_to_send(2.0).startswith(numbered(n + 1, f"G1X{n}Y{n}E.01"))  # sent compact
    assert host.job_state == JobState.RUNNING


def test_cancel_sends_m108_then_numbered_safe_stop_and_reports_the_last_acknowledged_line():
    file = ["M109 S210", "G28", "G1 X1", "G1 X2"]
    host, sent = started(file, rx_window_bytes=42, safe_stop_gcode=["M104 S0", "M84 ; motors off"])
    assert sent == numbered(1, "M109S210") + numbered(2, "G28")
    host.cancel(5.0, "member pressed stop")
    assert host.data_to_send(5.0) == b"M108\n"  # the window is full, M108 goes anyway
    events = host.receive(b"ok\nok\n", 6.0)  # M109 and G28
    assert [e.line_no for e in of(events, LineAcked)] == [1, 2]
    # never G1 X1; the closing M105 may use the room kept for a poke
    assert host.data_to_send(6.0) == numbered(3, "M104 S0") + numbered(4, "M84") + numbered(5, "M105")
    events = host.receive(b"ok\nok\nok\n", 6.1)  # M108's, M104's, M84's
    assert of(events, JobCancelled) == []
    events = host.receive(OK_T, 6.2)
    assert of(events, JobCancelled) == [JobCancelled(2, "member pressed stop")]
    assert JobStateChanged(JobState.CANCELLED, "member pressed stop") in events
    assert of(events, LineAcked) == []  # safe-stop lines are not file lines


def test_host_actions_from_the_printer_screen_are_reported_and_obeyed():
    file = ["G28", "G1 X1", "G1 X2", "G1 X3"]
    host, sent = started(file, rx_window_bytes=36)
    assert sent == numbered(1, "G28") + numbered(2, "G1X1")
    events = host.receive(b"//action:pause\n", 1.0)
    assert events[0] == HostActionRequested("pause")
    assert host.job_state == JobState.PAUSING
    host.receive(b"ok\nok\n", 1.1)
    assert host.job_state == JobState.PAUSED and host.data_to_send(1.1) == b""
    events = host.receive(b"//action:resume\n", 2.0)
    assert events[0] == HostActionRequested("resume")
    assert host.data_to_send(2.0) == numbered(3, "G1X2") + numbered(4, "G1X3") + numbered(5, "M105")
    events = host.receive(b"//action:cancel\n", 3.0)
    assert events[0] == HostActionRequested("cancel")
    assert host.job_state == JobState.CANCELLING
    assert host.data_to_send(3.0).startswith(b"M108\n")


def test_pause_resume_cancel_without_a_job_change_nothing():
    host = MarlinHost()
    host.pause(0.0)
    host.resume(0.0)
    host.cancel(0.0)
    assert host.poll(0.0) == [] and host.data_to_send(0.0) == b""
    assert host.job_state == JobState.IDLE


# -- manual commands ------------------------------------------------------------------------------


def test_a_manual_command_is_sent_unnumbered_and_its_reply_collected_until_ok():
    host = MarlinHost()
    host.send_command("M114 ; where are we")
    assert host.data_to_send(0.0) == b"M114\n"
    events = host.receive(b"X:0.00 Y:0.00 Z:0.00 E:0.00 Count X:0 Y:0 Z:0\nok\n", 0.1)
    assert events == [CommandReply("M114", ("X:0.00 Y:0.00 Z:0.00 E:0.00 Count X:0 Y:0 Z:0", "ok"), True)]


def test_an_unknown_manual_command_is_not_ok():
    host = MarlinHost()
    host.send_command("M9999")
    host.data_to_send(0.0)
    events = host.receive(b'echo:Unknown command: "M9999"\nok\n', 0.1)
    assert events == [CommandReply("M9999", ('echo:Unknown command: "M9999"', "ok"), False)]


def test_a_manual_m105_gets_its_temperatures():
    host = MarlinHost()
    host.send_command("M105")
    host.data_to_send(0.0)
    events = host.receive(OK_T, 0.1)
    assert CommandReply("M105", (OK_T.decode().strip(),), True) in events


def test_blank_or_oversized_manual_commands_are_refused():
    with pytest.raises(ValueError, match="blank"):
        MarlinHost().send_command("  ; just a comment")
    with pytest.raises(ValueError, match="96"):
        MarlinHost().send_command("M117 " + "x" * 100)


def test_a_manual_command_goes_between_job_lines():
    host, sent = started(["G28", "G1 X1", "G1 X2", "G1 X3"], rx_window_bytes=36)
    assert sent == numbered(1, "G28") + numbered(2, "G1X1")
    host.send_command("M220 S150")
    host.receive(b"ok\n", 1.0)
    assert host.data_to_send(1.0) == b"M220 S150\n"
    host.receive(b"ok\n", 1.1)  # G1 X1
    events = host.receive(b"ok\n", 1.2)
    assert CommandReply("M220 S150", ("ok",), True) in events
    assert host.data_to_send(1.2) == numbered(3, "G1X2") + numbered(4, "G1X3") + numbered(5, "M105")


def test_firmware_without_m155_gets_polled_with_m105():
    host = MarlinHost(temperature_interval_s=2.0, rx_window_bytes=45)
    host.start_job([f"G1 X{i:03d}" for i in range(30)], 0.0)
    host.data_to_send(0.0)
    host.receive(b"ok\n", 0.1)
    sent = host.data_to_send(0.1)
    assert sent == b"M155 S2\n" + numbered(1, "G1X0") + numbered(2, "G1X1")
    events = host.receive(b'echo:Unknown command: "M155 S2"\nok\nok\n', 0.2)
    assert of(events, FirmwareMessage) and of(events, LineAcked)  # the M155's `ok` counted as its own
    assert host.next_deadline() == pytest.approx(0.2)
    host.poll(0.2)
    assert host.data_to_send(0.2).startswith(numbered(3, "M105"))  # numbered: it also confirms
    assert host.next_deadline() == pytest.approx(2.2)
    events = host.receive(OK_T, 0.3)
    assert of(events, Temperatures) and [e.line_no for e in of(events, LineAcked)] == [2]


# -- the byte stream --------------------------------------------------------------------------------


def test_replies_split_anywhere_are_put_back_together():
    host, _ = started(["G28", "G1 X1"])
    data = b"ok\r\necho:busy: processing\r\nok T:20.0 /0.0 B:20.0 /0.0 @:0 B@:0\r\nok\r\n"
    events = []
    for i in range(len(data)):
        events += host.receive(data[i : i + 1], 1.0)
    assert [type(e) for e in events] == [
        LineAcked,
        FirmwareBusy,
        Temperatures,
        LineAcked,
        JobStateChanged,
        JobCompleted,
    ]


def test_next_deadline_is_none_when_nothing_is_expected():
    host = MarlinHost()
    assert host.next_deadline() is None
    host.start_job([], 3.0)
    assert host.next_deadline() == 3.0  # an event waits for poll()


def test_a_real_print_streams_to_the_end(gcode):
    path = gcode("prusaslicer-vase.gcode")
    file = path.read_text(encoding="utf-8", errors="replace").splitlines()
    host, sent = started(file)
    acked: list[LineAcked] = []
    done: list[JobCompleted] = []
    t = 1.0
    while sent and not done:
        events = host.receive(answers(sent), t)
        acked += of(events, LineAcked)
        done += of(events, JobCompleted)
        sent = host.data_to_send(t)
        t += 0.01
    commands = [i for i, line in enumerate(file, 1) if line.split(";", 1)[0].strip()]
    assert done and done[0].lines == len(commands) == len(acked)
    assert acked[-1].line_no == commands[-1]


def test_a_probe_glued_to_stray_bytes_is_answered_by_its_ok():
    # `?` left in Marlin's RX buffer (a GRBL probe tried on this port) turns our M105 into `?M105`
    host = MarlinHost()
    host.send_command("M105")
    host.data_to_send(0.0)
    events = host.receive(b'echo:Unknown command: "?M105"\nok\n', 0.1)
    assert events == [CommandReply("M105", ('echo:Unknown command: "?M105"', "ok"), False)]


# -- other firmware's habits (issue 9 section 4) ---------------------------------------------------


@pytest.mark.parametrize("line", [b"// action:pause\n", b"//  action:pause\n"])
def test_host_actions_written_with_a_space_are_obeyed(line: bytes):
    host, _ = started(["G28", "G1 X1", "G1 X2", "G1 X3"], rx_window_bytes=36)
    events = host.receive(line, 1.0)
    assert events[0] == HostActionRequested("pause")
    assert host.job_state == JobState.PAUSING


def test_a_printer_asking_for_the_same_line_forever_fails_the_job_naming_it():
    host, sent = started(["G28", "G1 X1", "G1 X2"], max_resends_of_one_line=3)
    refusal = b"Error:checksum mismatch, Last Line: 1\nResend: 2\nok\n"
    events = host.receive(b"ok\n" + refusal * (len(lines_of(sent)) - 1), 1.0)  # G28 taken, the rest refused
    failed = of(events, JobFailed)
    for t in range(2, 10):
        if failed:
            break
        again = lines_of(host.data_to_send(float(t)))
        assert again[0] == numbered(2, "G1X1")  # asked for again: sent again
        failed = of(host.receive(refusal * len(again), float(t)), JobFailed)  # refused, every copy
    assert len(failed) == 1 and failed[0].kind == "error"
    assert "N2 (file line 2) 4 times in a row" in failed[0].reason
    assert "checksum mismatch" in failed[0].reason
    assert host.job_state == JobState.FAILED


def test_a_klipper_error_during_a_job_fails_it():
    host, _ = started(["G28", "G1 X1000"])
    events = host.receive(b"ok\n!! Move out of range: 1000.000 0.000 0.000 [0.000]\nok\n", 1.0)
    failed = of(events, JobFailed)
    assert len(failed) == 1 and failed[0].kind == "error"
    assert "Move out of range" in failed[0].reason
    assert host.job_state == JobState.FAILED


def test_a_locked_printer_fails_the_job():
    host, _ = started(["G28", "G1 X1"])
    events = host.receive(b"echo:Printer locked! (Unlock with M511 or LCD)\nok\n", 1.0)
    failed = of(events, JobFailed)
    assert len(failed) == 1 and "M511" in failed[0].reason
    assert of(events, LineAcked) == []


def test_ok_before_the_temperature_line_still_ends_the_job():
    host, sent = started(["G28"])
    assert sent == numbered(1, "G28") + numbered(2, "M105")
    events = host.receive(b"ok\nok\n T:25.00 /0.00 B:25.00 /0.00 @:0 B@:0\n", 1.0)
    assert of(events, JobCompleted) == [JobCompleted(1, len(numbered(1, "G28")), 0)]
