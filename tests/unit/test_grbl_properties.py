"""Property tests: GrblHost against a small GRBL 1.1 firmware model written here, from GRBL's docs.

The model has a 128-byte serial receive buffer that drops bytes when full (the test asserts it never
had to), picks real-time bytes out of the stream as GRBL's serial interrupt does, executes lines at
random moments, answers one `ok` per line, and hands its output back split at random byte boundaries.
"""

from __future__ import annotations

import random
import re
from collections import deque

from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.events import Event, JobCompleted, JobState, LineAcked
from drivers.gcode_text import strip_for_wire
from drivers.grbl.host import GrblHost
from tests.unit.test_grbl_lines import as_grbl_reads

RX_BUFFER = 128
REALTIME = {ord("?"), ord("!"), ord("~"), 0x18}
SETTINGS_WRITE = re.compile(rb"^\$\d+=")


class GrblModel:
    """Just enough of GRBL 1.1's serial side to catch a host that overfills or interleaves it."""

    def __init__(self) -> None:
        self.rx = bytearray()  # the serial receive buffer
        self.dropped = 0
        self.realtime = bytearray()  # every real-time byte seen, in order
        self.executed: list[str] = []
        self.partial = bytearray()  # the line being read out of rx
        self.out: deque[bytes] = deque()  # whole messages; GRBL never interleaves inside one
        self.out_offset = 0
        self.held = False
        self.lines_in = 0  # complete lines (newline seen) that arrived
        self.answers_out = 0  # ok/error lines the host has fully received
        self.max_unanswered_bytes = 0
        self.unanswered: deque[int] = deque()  # sizes of lines arrived and not answered to the host
        self.arriving = bytearray()  # the line arriving now, as the host sends it
        self.alone: bytes | None = None  # a `$` line sent: nothing may arrive until its ok
        self.violations: list[str] = []

    # -- the serial interrupt -------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        for byte in data:
            if byte in REALTIME:
                self._realtime(byte)
                continue
            self._check_arrival(byte)
            if len(self.rx) >= RX_BUFFER:
                self.dropped += 1
            else:
                self.rx.append(byte)

    def _realtime(self, byte: int) -> None:
        self.realtime.append(byte)
        if byte == ord("?"):
            if self.alone is not None and SETTINGS_WRITE.match(self.alone):
                self.violations.append(f"? during the EEPROM write of {self.alone!r}")
            state = "Hold:0" if self.held else "Run"
            self.out.append(f"<{state}|MPos:0.000,0.000,0.000|Bf:15,{RX_BUFFER - len(self.rx)}>\r\n".encode())
        elif byte == ord("!"):
            self.held = True
        elif byte == ord("~"):
            self.held = False

    def _check_arrival(self, byte: int) -> None:
        if self.alone is not None:
            self.violations.append(f"byte {bytes([byte])!r} sent before the ok of {self.alone!r}")
        if not self.arriving and byte == ord("$") and self.lines_in != self.answers_out:
            self.violations.append("a $ line sent before every earlier line was answered")
        self.arriving.append(byte)
        if byte == ord("\n"):
            self.lines_in += 1
            self.unanswered.append(len(self.arriving))
            self.max_unanswered_bytes = max(self.max_unanswered_bytes, sum(self.unanswered))
            if self.arriving.startswith(b"$"):
                self.alone = bytes(self.arriving[:-1])
            self.arriving.clear()

    # -- the main loop --------------------------------------------------------------------------

    def process(self, budget: int) -> None:
        """Read up to `budget` bytes out of the receive buffer (none while held: the planner is full)."""
        if self.held:
            return
        while budget > 0 and self.rx:
            byte = self.rx.pop(0)
            budget -= 1
            if byte != ord("\n"):
                self.partial.append(byte)
                continue
            self.executed.append(self.partial.decode("ascii"))
            self.partial.clear()
            self.out.append(b"ok\r\n")

    def take_output(self, size: int) -> bytes:
        """Up to `size` bytes of what GRBL printed, cut anywhere."""
        chunk = bytearray()
        while size > 0 and self.out:
            message = self.out[0]
            piece = message[self.out_offset : self.out_offset + size]
            chunk += piece
            size -= len(piece)
            self.out_offset += len(piece)
            if self.out_offset == len(message):
                self.out.popleft()
                self.out_offset = 0
                if message == b"ok\r\n":
                    self._answered()
        return bytes(chunk)

    def _answered(self) -> None:
        self.answers_out += 1
        self.unanswered.popleft()
        if self.answers_out == self.lines_in:
            self.alone = None


# -- job lines ----------------------------------------------------------------------------------

number = st.from_regex(r"-?[0-9]{1,3}(\.[0-9]{1,3})?", fullmatch=True)
word = st.tuples(st.sampled_from("GMXYFS"), number).map("".join)
code = st.lists(word, min_size=1, max_size=5).map(" ".join)
comment_text = st.text(alphabet="abc !~?é\t°x", max_size=12)
line = st.one_of(  # plain lines weigh most, so that the window fills between two `$` lines
    code,
    code,
    code,
    code,
    st.tuples(code, comment_text).map(lambda t: f"{t[0]} ;{t[1]}"),
    st.tuples(comment_text, code).map(lambda t: f"({t[0]}) {t[1]}"),
    st.tuples(code, comment_text).map(lambda t: f"{t[0]}({t[1]})"),
    comment_text.map(lambda c: f";{c}"),
    comment_text.map(lambda c: f"({c})"),
    st.sampled_from(["", "   ", "\t", "G1 X1 é Y2", "M5 °"]),
    st.sampled_from(["$32=1", "$30=1000", "$H", "$X", "$N0=G21"]),
)
jobs = st.lists(line, min_size=25, max_size=150)  # empty and tiny jobs: see test_grbl.py


def cleaned(lines: list[str]) -> list[tuple[int, str]]:
    return [(n, c) for n, raw in enumerate(lines, 1) if (c := strip_for_wire(raw, paren_comments=True))]


def assert_grbl_read_the_job(executed: list[str], expected: list[str]) -> None:
    """GRBL took every command of the job, each as it would the file's line, none in more bytes."""
    assert [as_grbl_reads(t) for t in executed] == [as_grbl_reads(t) for t in expected]
    assert all(len(e) <= len("".join(x.split())) for e, x in zip(executed, expected, strict=True))


def run(lines: list[str], rng: random.Random, pauses: bool) -> tuple[GrblModel, list[Event]]:
    """Drive host and model in a random interleaving, then to the end."""
    host, model = GrblHost(no_answer_after_s=1e9), GrblModel()
    now, events = 0.0, list[Event]()
    host.start_job(lines, now)
    for _ in range(rng.randint(0, 1500)):
        roll = rng.random()
        if roll < 0.3:
            model.feed(host.data_to_send(now))
        elif roll < 0.55:
            model.process(rng.randint(1, 40))
        elif roll < 0.85:
            events += host.receive(model.take_output(rng.randint(1, 30)), now)
        elif pauses and roll < 0.9:
            (host.pause if host.job_state == JobState.RUNNING else host.resume)(now)
        else:
            now += rng.random() * 0.3
            events += host.poll(now)
        if host.job_state in JobState.ENDED:
            break
    if host.job_state in (JobState.PAUSING, JobState.PAUSED):
        host.resume(now)
    for _ in range(10_000):
        if host.job_state in JobState.ENDED:
            break
        model.feed(host.data_to_send(now))
        model.process(RX_BUFFER)
        events += host.receive(model.take_output(10_000), now)
        now += 0.05
        events += host.poll(now)
    return model, events


@settings(deadline=None, max_examples=100)
@given(lines=jobs, rng=st.randoms(use_true_random=False))
def test_executed_commands_equal_the_jobs_cleaned_commands(lines: list[str], rng: random.Random) -> None:
    model, events = run(lines, rng, pauses=False)
    expected = cleaned(lines)
    assert_grbl_read_the_job(model.executed, [text for _, text in expected])
    assert model.dropped == 0 and model.max_unanswered_bytes <= RX_BUFFER
    assert model.violations == []
    assert set(model.realtime) <= {ord("?")}  # no `!`, `~` or reset ever leaked from a comment
    acked = [e for e in events if isinstance(e, LineAcked)]
    assert [a.line_no for a in acked] == [n for n, _ in expected]
    done = [e for e in events if isinstance(e, JobCompleted)]
    assert done == [JobCompleted(len(expected), sum(len(t) + 1 for t in model.executed), 0)]


@settings(deadline=None, max_examples=60)
@given(lines=jobs, rng=st.randoms(use_true_random=False))
def test_pause_and_resume_lose_and_repeat_nothing(lines: list[str], rng: random.Random) -> None:
    model, events = run(lines, rng, pauses=True)
    assert_grbl_read_the_job(model.executed, [text for _, text in cleaned(lines)])
    assert model.dropped == 0 and model.max_unanswered_bytes <= RX_BUFFER
    assert model.violations == []
    assert any(isinstance(e, JobCompleted) for e in events)
