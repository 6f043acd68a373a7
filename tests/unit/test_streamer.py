"""The streamer thread over a real pty (echo peer) or pyserial's loop://, driving a tiny echo protocol."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from drivers.events import CommandReply, LineAcked
from drivers.serial_link import PortLost, SerialLink
from drivers.streamer import JobTracker, LinkLost, Progress, StreamEnded, Streamer, count_job_lines
from tests.unit.test_streamer_fakes import EchoProtocol, PtyEcho

JOB = ["; a comment line", "G28", "", *[f"G1 X{i} Y{i % 7} F1200 ; move {i}" for i in range(300)], "M84"]
WIRE_LINES = [line.split(";")[0].strip() for line in JOB if line.split(";")[0].strip()]


class Recorder:
    """Collects what the streamer reports and lets a test wait for a condition."""

    def __init__(self) -> None:
        self.events: list[object] = []
        self.cond = threading.Condition()

    def __call__(self, event: object) -> None:
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def of(self, kind: type) -> list:
        with self.cond:
            return [e for e in self.events if isinstance(e, kind)]

    def wait_for(self, kind: type, timeout: float = 5.0) -> object:
        with self.cond:
            ok = self.cond.wait_for(lambda: any(isinstance(e, kind) for e in self.events), timeout)
        assert ok, f"no {kind.__name__} within {timeout} s; got {self.events[-5:]}"
        return self.of(kind)[0]


@pytest.fixture
def echo() -> Iterator[PtyEcho]:
    peer = PtyEcho()
    yield peer
    peer.close()


def make(path: str, **kw: object) -> tuple[Streamer, Recorder, EchoProtocol]:
    rec = Recorder()
    proto = EchoProtocol(**kw)  # type: ignore[arg-type]
    return Streamer(SerialLink(path), proto, rec, progress_interval_s=0.05), rec, proto


@pytest.mark.timeout(20)
def test_job_over_a_pty_sends_exactly_the_file_commands_and_completes(echo: PtyEcho) -> None:
    streamer, rec, _ = make(echo.path)
    with streamer:
        streamer.start_job(JOB, name="cube.gcode")
        ended = rec.wait_for(StreamEnded)
    wire = "".join(f"{line}\n" for line in WIRE_LINES).encode()
    assert bytes(echo.received) == wire
    assert isinstance(ended, StreamEnded)
    assert (ended.status, ended.kind, ended.name) == ("completed", "", "cube.gcode")
    assert ended.lines_acked == len(WIRE_LINES)
    assert ended.bytes_sent == len(wire)
    assert ended.last_line_no == len(JOB)  # M84, the file's last line
    final = rec.of(Progress)[-1]
    assert (final.percent, final.lines_acked, final.lines_total) == (100.0, len(WIRE_LINES), len(WIRE_LINES))
    assert final.eta_s == 0.0
    # Every protocol event is passed on, in order, before the StreamEnded it leads to.
    acks = rec.of(LineAcked)
    assert [a.acked_lines for a in acks] == list(range(1, len(WIRE_LINES) + 1))
    assert rec.events.index(acks[-1]) < rec.events.index(ended)
    assert not streamer.job_active


@pytest.mark.timeout(20)
def test_progress_is_rate_limited_and_ends_with_one_final_report(echo: PtyEcho) -> None:
    streamer, rec, _ = make(echo.path, window=16)
    with streamer:
        streamer.start_job(JOB)
        rec.wait_for(StreamEnded)
    progress = rec.of(Progress)
    assert 1 <= len(progress) < len(WIRE_LINES) / 2
    assert [p.lines_acked for p in progress] == sorted(p.lines_acked for p in progress)
    # The last one comes right before StreamEnded and tells what was really executed.
    assert rec.events[-2] is progress[-1] and isinstance(rec.events[-1], StreamEnded)


@pytest.mark.timeout(20)
def test_silent_firmware_ends_the_job_by_the_protocol_timer(echo: PtyEcho) -> None:
    echo.silent = True
    streamer, rec, _ = make(echo.path, no_answer_s=0.3)
    with streamer:
        streamer.start_job(JOB)
        ended = rec.wait_for(StreamEnded)
    assert isinstance(ended, StreamEnded)
    assert (ended.status, ended.kind, ended.lines_acked) == ("failed", "no_answer", 0)
    assert ended.duration_s >= 0.3


@pytest.mark.timeout(20)
def test_port_lost_mid_job_fails_the_job_as_port_lost(echo: PtyEcho) -> None:
    streamer, rec, proto = make(echo.path, window=8)
    with streamer:
        streamer.pause()
        streamer.start_job(JOB)
        streamer.resume()
        deadline = time.monotonic() + 5
        while proto.acked_lines < 20 and time.monotonic() < deadline:
            rec.wait_for(LineAcked)
            with rec.cond:
                rec.cond.wait(0.1)
        echo.close()
        ended = rec.wait_for(StreamEnded)
        lost = rec.wait_for(LinkLost)
    assert isinstance(ended, StreamEnded) and isinstance(lost, LinkLost)
    assert (ended.status, ended.kind) == ("failed", "port_lost")
    assert echo.path in ended.reason
    assert 0 < ended.lines_acked < len(WIRE_LINES)


@pytest.mark.timeout(20)
def test_a_job_started_after_the_port_was_lost_fails_at_once(echo: PtyEcho) -> None:
    streamer, rec, _ = make(echo.path)
    with streamer:
        echo.close()
        streamer.send_command("M105")  # the write finds the port hung up
        rec.wait_for(LinkLost)
        streamer.start_job(JOB)
        ended = rec.wait_for(StreamEnded)
    assert isinstance(ended, StreamEnded)
    assert (ended.status, ended.kind, ended.lines_acked) == ("failed", "port_lost", 0)


@pytest.mark.timeout(20)
def test_cancel_ends_the_job_as_cancelled_and_stops_sending(echo: PtyEcho) -> None:
    streamer, rec, _ = make(echo.path, window=8)
    with streamer:
        streamer.pause()
        streamer.start_job(JOB)
        streamer.cancel("member pressed stop")
        ended = rec.wait_for(StreamEnded)
    assert isinstance(ended, StreamEnded)
    assert (ended.status, ended.kind, ended.reason) == ("cancelled", "cancelled", "member pressed stop")
    assert bytes(echo.received) == b""  # paused from the start, so no job line went out


@pytest.mark.timeout(20)
def test_console_command_gets_its_reply_and_a_second_job_is_refused(echo: PtyEcho) -> None:
    streamer, rec, _ = make(echo.path)
    with streamer:
        streamer.send_command("M115")
        reply = rec.wait_for(CommandReply)
        assert streamer.wait_ready(0)
        streamer.pause()
        streamer.start_job(JOB)
        with pytest.raises(RuntimeError, match="already running"):
            streamer.start_job(JOB)
    assert isinstance(reply, CommandReply) and reply.lines == ("M115",)


@pytest.mark.timeout(20)
def test_close_during_a_job_reports_it_ended(echo: PtyEcho) -> None:
    echo.silent = True
    streamer, rec, _ = make(echo.path, no_answer_s=30)
    streamer.start_job(JOB)
    streamer.close()
    ended = rec.wait_for(StreamEnded, timeout=0)
    assert isinstance(ended, StreamEnded) and (ended.status, ended.kind) == ("failed", "host_closed")


@pytest.mark.timeout(20)
def test_wait_ready_gives_up_on_a_board_that_never_greets(echo: PtyEcho) -> None:
    echo.silent = True
    streamer, _, _ = make(echo.path)
    with streamer:
        assert streamer.wait_ready(0.2) is False


@pytest.mark.timeout(20)
def test_ports_without_a_file_descriptor_still_stream() -> None:
    streamer, rec, _ = make("loop://")
    with streamer:
        streamer.start_job(JOB)
        ended = rec.wait_for(StreamEnded)
    assert isinstance(ended, StreamEnded) and ended.status == "completed"
    assert ended.lines_acked == len(WIRE_LINES)


def test_opening_a_missing_port_names_it() -> None:
    with pytest.raises(PortLost, match="/dev/does-not-exist"):
        Streamer(SerialLink("/dev/does-not-exist"), EchoProtocol(), lambda e: None)


def test_tracker_estimates_eta_from_the_acknowledged_rate() -> None:
    tracker = JobTracker("job", total_lines=100, now=10.0, progress_interval_s=1.0)
    first = tracker.on_event(LineAcked(5, 1, 10), now=10.5)
    assert first and isinstance(first[0], Progress)
    assert tracker.on_event(LineAcked(9, 2, 20), now=10.8) == []  # within the interval
    assert tracker.due_progress(11.0) is None
    due = tracker.due_progress(11.5)
    assert due is not None
    assert (due.lines_acked, due.last_line_no, due.percent) == (2, 9, 2.0)
    assert due.lines_per_s == pytest.approx(2 / 1.5)
    assert due.eta_s == pytest.approx(98 / (2 / 1.5))


def test_count_job_lines_skips_comments_and_blanks() -> None:
    assert count_job_lines(JOB) == len(WIRE_LINES)


@pytest.mark.timeout(20)
def test_real_time_bytes_go_out_at_once_outside_the_protocol(echo: PtyEcho) -> None:
    streamer, rec, _ = make(echo.path)
    with streamer:
        streamer.send_realtime(b"?")
        streamer.send_command("M105")  # its echo proves the "?" went out before it
        rec.wait_for(CommandReply)
    assert bytes(echo.received) == b"?M105\n"


@pytest.mark.timeout(20)
def test_a_protocol_that_refuses_to_start_ends_the_job_with_its_reason(echo: PtyEcho) -> None:
    streamer, rec, proto = make(echo.path)

    def refuse(lines: object, now: float) -> None:
        raise RuntimeError("a job is already cancelling")

    proto.start_job = refuse  # type: ignore[method-assign]
    with streamer:
        streamer.start_job(JOB)
        ended = rec.wait_for(StreamEnded)
        assert not streamer.job_active
    assert isinstance(ended, StreamEnded)
    assert (ended.status, ended.kind) == ("failed", "rejected")
    assert "already cancelling" in ended.reason


@pytest.mark.timeout(20)
def test_a_protocol_bug_ends_the_job_and_later_jobs_are_refused(echo: PtyEcho) -> None:
    streamer, rec, proto = make(echo.path)

    def broken(now: float) -> bytes:
        raise TypeError("bug in the protocol")

    proto.data_to_send = broken  # type: ignore[method-assign]
    with streamer:
        streamer.start_job(JOB)
        ended = rec.wait_for(StreamEnded)
        with pytest.raises(RuntimeError, match="bug in the protocol"):
            streamer.start_job(JOB)
    assert isinstance(ended, StreamEnded)
    assert (ended.status, ended.kind) == ("failed", "internal")
    assert "bug in the protocol" in ended.reason
