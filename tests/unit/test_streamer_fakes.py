"""Helpers, not tests: a tiny echo protocol and a pty echo peer, to test the streamer alone."""

from __future__ import annotations

import os
import selectors
import threading
import tty
from collections import deque
from collections.abc import Sequence

from drivers.events import (
    CommandReply,
    Event,
    JobCancelled,
    JobCompleted,
    JobFailed,
    JobState,
    LineAcked,
)
from drivers.gcode_text import strip_for_wire


class EchoProtocol:
    """Sends job lines within a byte window; a line coming back unchanged acknowledges it."""

    @staticmethod
    def wire_text(line: str) -> str:
        return strip_for_wire(line, paren_comments=False)

    def __init__(self, window: int = 64, no_answer_s: float = 0.5) -> None:
        self.window = window
        self.no_answer_s = no_answer_s
        self.state = JobState.IDLE
        self.pending: deque[tuple[int, str]] = deque()  # (file line no, text) not yet sent
        self.in_flight: deque[tuple[int, str]] = deque()  # line no 0 = manual command
        self.commands: deque[str] = deque()
        self.acked_lines = 0
        self.acked_bytes = 0
        self.buffer = b""
        self.last_heard = 0.0
        self.cancel_reason = ""
        self.paused = False

    @property
    def job_state(self) -> str:
        return self.state

    def start_job(self, lines: Sequence[str], now: float) -> None:
        stripped = ((no, strip_for_wire(raw, paren_comments=False)) for no, raw in enumerate(lines, 1))
        self.pending = deque((no, text) for no, text in stripped if text)
        self.state = JobState.RUNNING
        self.last_heard = now

    def receive(self, data: bytes, now: float) -> list[Event]:
        self.buffer += data
        events: list[Event] = []
        while b"\n" in self.buffer:
            raw, self.buffer = self.buffer.split(b"\n", 1)
            self.last_heard = now
            if not self.in_flight:
                continue
            no, text = self.in_flight.popleft()
            if no == 0:
                events.append(CommandReply(text, (raw.decode(),), raw.decode() == text))
                continue
            self.acked_lines += 1
            self.acked_bytes += len(text) + 1
            events.append(LineAcked(no, self.acked_lines, self.acked_bytes))
        events.extend(self._maybe_end())
        return events

    def _maybe_end(self) -> list[Event]:
        if self.state == JobState.RUNNING and not self.pending and not self._job_in_flight():
            self.state = JobState.COMPLETED
            return [JobCompleted(self.acked_lines, self.acked_bytes, 0)]
        if self.state == JobState.CANCELLING and not self._job_in_flight():
            self.state = JobState.CANCELLED
            return [JobCancelled(self.last_line(), self.cancel_reason)]
        return []

    def _job_in_flight(self) -> bool:
        return any(no for no, _ in self.in_flight)

    def last_line(self) -> int:
        return 0

    def data_to_send(self, now: float) -> bytes:
        was_idle = not self.in_flight
        out = b""
        while self.commands:
            text = self.commands.popleft()
            self.in_flight.append((0, text))
            out += text.encode() + b"\n"
        used = sum(len(t) + 1 for _, t in self.in_flight)
        while self.state == JobState.RUNNING and not self.paused and self.pending:
            no, text = self.pending[0]
            if used + len(text) + 1 > self.window and self.in_flight:
                break
            self.pending.popleft()
            self.in_flight.append((no, text))
            used += len(text) + 1
            out += text.encode() + b"\n"
        if out and was_idle:
            self.last_heard = now  # the answer timer runs from the first line that waits for one
        return out

    def poll(self, now: float) -> list[Event]:
        if self.state == JobState.CANCELLING:
            return self._maybe_end()
        if self.in_flight and now - self.last_heard >= self.no_answer_s and self.state not in JobState.ENDED:
            self.state = JobState.FAILED
            return [JobFailed("no_answer", f"no answer for {self.no_answer_s} s", 0)]
        return []

    def next_deadline(self) -> float | None:
        if self.state == JobState.CANCELLING:
            return 0.0  # nothing in flight waits for an answer: end at once
        if self.in_flight and self.state not in JobState.ENDED:
            return self.last_heard + self.no_answer_s
        return None

    def pause(self, now: float) -> None:
        self.paused = True

    def resume(self, now: float) -> None:
        self.paused = False

    def cancel(self, now: float, reason: str = "cancelled") -> None:
        self.pending.clear()
        self.cancel_reason = reason
        self.state = JobState.CANCELLING

    def send_command(self, line: str) -> None:
        self.commands.append(line)


class PtyEcho:
    """The far end of a pty: echoes what arrives (or swallows it when `silent`); close() hangs it up."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.silent = False
        self.received = bytearray()
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self.master, selectors.EVENT_READ)
            sel.register(self._stop_r, selectors.EVENT_READ)
            while True:
                for key, _ in sel.select():
                    if key.fd == self._stop_r:
                        return
                    try:
                        data = os.read(self.master, 4096)
                    except OSError:
                        return
                    self.received += data
                    if not self.silent:
                        os.write(self.master, data)

    def close(self) -> None:
        """Stop echoing and close both ends: the host sees its port hung up."""
        if self._stop_w < 0:
            return
        os.write(self._stop_w, b"x")
        self._thread.join(5)
        for fd in (self.master, self.slave, self._stop_r, self._stop_w):
            os.close(fd)
        self._stop_w = -1
