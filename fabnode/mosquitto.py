"""Finding and probing a local mosquitto: shared by the demo's broker and the tests' broker fixture."""

from __future__ import annotations

import os
import shutil
import socket

MOSQUITTO_FALLBACK = "/usr/sbin/mosquitto"  # Debian installs it outside a normal user's PATH
# MQTT 3.1.1 CONNECT, clean session, keepalive 5, client id "probe".
_CONNECT = bytes([0x10, 17, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 5, 0, 5]) + b"probe"
_DISCONNECT = bytes([0xE0, 0])


def mosquitto_binary() -> str | None:
    """The mosquitto executable, or None when it is not installed."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return MOSQUITTO_FALLBACK if os.access(MOSQUITTO_FALLBACK, os.X_OK) else None


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel's choice)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def connack_probe(sock: socket.socket) -> None:
    """Send an MQTT CONNECT on a connected socket; ConnectionError unless a CONNACK comes back."""
    sock.sendall(_CONNECT)
    reply = sock.recv(4)
    if len(reply) < 4 or reply[0] != 0x20:
        raise ConnectionError(f"no CONNACK (got {reply!r})")
    sock.sendall(_DISCONNECT)
