"""systemd's notify protocol (sd_notify) in a few lines, so the unit can be Type=notify with a watchdog.

The daemon sends READY=1 once it serves, WATCHDOG=1 from its controller loop (so a stuck loop is
killed and restarted by systemd), STATUS=... for `systemctl status`, and STOPPING=1 on its way out.
Without $NOTIFY_SOCKET (run by hand, in tests) every call does nothing.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Mapping


class Notifier:
    """Sends datagrams to $NOTIFY_SOCKET; a no-op when systemd did not give one."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        e = os.environ if env is None else env
        path = e.get("NOTIFY_SOCKET", "")
        # A leading "@" names a socket in the abstract namespace.
        self._address = ("\0" + path[1:]) if path.startswith("@") else path
        self.watchdog_s = _watchdog_interval(e)

    @property
    def enabled(self) -> bool:
        """True when systemd listens."""
        return bool(self._address)

    def notify(self, *fields: str) -> bool:
        """Send `KEY=value` lines in one datagram; False when nobody listens or the send failed."""
        if not self._address:
            return False
        data = "\n".join(fields).encode()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock, contextlib.suppress(OSError):
            sock.sendto(data, self._address)
            return True
        return False

    def ready(self, status: str = "") -> bool:
        """READY=1 (and a STATUS line)."""
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        """WATCHDOG=1: the loop is alive."""
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        """STATUS=text, shown by `systemctl status fabnode`."""
        return self.notify(f"STATUS={text}")

    def stopping(self) -> bool:
        """STOPPING=1."""
        return self.notify("STOPPING=1")


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Half of WatchdogSec= (systemd's advice), or None when no watchdog is set for this process."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) <= 0:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 1e6 / 2
