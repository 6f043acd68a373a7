"""The interface every sans-I/O firmware protocol (drivers.marlin.host, drivers.grbl.host) offers its driver.

No threads, ports, sleeps or clocks inside: the driver passes `now` (monotonic seconds) in, feeds
received bytes in, and asks which bytes to write. The streamer (drivers.streamer) is the only driver
in production; unit tests drive protocols directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from drivers.events import Event


class HostProtocol(Protocol):
    """A host's side of one firmware protocol."""

    def wire_text(self, line: str) -> str:
        """What of one file line this protocol sends ("" when nothing: a comment or a blank)."""
        ...

    @property
    def job_state(self) -> str:
        """One of drivers.events.JobState."""
        ...

    def start_job(self, lines: Sequence[str], now: float) -> None:
        """Begin streaming these raw file lines (comments and blanks are skipped, never sent)."""
        ...

    def receive(self, data: bytes, now: float) -> list[Event]:
        """Take bytes read from the port (any split, partial lines kept) and return what they mean."""
        ...

    def data_to_send(self, now: float) -> bytes:
        """Bytes that may be written now within the firmware's flow-control window (may be b"")."""
        ...

    def poll(self, now: float) -> list[Event]:
        """Run timers: pokes on silence, no-answer failure, status polling."""
        ...

    def next_deadline(self) -> float | None:
        """The latest monotonic time at which poll() must run again, or None when no timer is armed."""
        ...

    def pause(self, now: float) -> None:
        """Stop sending job lines (GRBL: also a feed hold)."""
        ...

    def resume(self, now: float) -> None:
        """Carry on from where the job paused."""
        ...

    def cancel(self, now: float, reason: str = "cancelled") -> None:
        """Stop the job and make the machine safe (printer: safe-stop G-code; laser: hold, beam off)."""
        ...

    def send_command(self, line: str) -> None:
        """Queue one manual command (console, calibration) outside any job; its reply is a CommandReply."""
        ...
