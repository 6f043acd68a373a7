"""The daemon's parts that start and stop with it: telemetry, the session at stop, the last records.

Functions of the running `fabnode.node.loop.Daemon`, called from its controller thread (at start-up, on
a reload and at stop); kept apart so that daemon.py stays about the event loop and the firmware.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fabnode.node.loop import Daemon

log = logging.getLogger("fabnode.daemon")


def start_telemetry(d: Daemon) -> None:
    """Start the MQTT publisher when a broker is configured; on failure run on (records wait)."""
    d.telemetry = None
    if d.config.telemetry.broker is None:
        return
    from fabnode.telemetry.publisher import TelemetryError, TelemetryPublisher, TelemetrySettings

    try:
        publisher = TelemetryPublisher(d.log, TelemetrySettings.from_config(d.config))
        publisher.start()
    except TelemetryError as exc:  # access control matters more: run on, records wait in the outbox
        log.error("telemetry not started (records wait in the outbox): %s", exc)
        return
    d.telemetry = publisher
    log.info("telemetry to %s", d.config.telemetry.broker)


def stop_telemetry(d: Daemon) -> None:
    """Stop the publisher, if one runs."""
    publisher, d.telemetry = d.telemetry, None
    if publisher is not None:
        publisher.stop()


def close_session(d: Daemon, reason: str) -> None:
    """Record the end of the open session (at stop), its duration from the monotonic clock."""
    session, row = d.controller.session, d.actions.session_row
    if session is None or row is None:
        return
    at, duration = d.wall(), d.clock() - session.started_at
    d.storage.write(f"the end of session {row}", lambda: d.log.close_session(row, at, reason, duration))
    d.actions.session_row = None


def last_records(d: Daemon) -> None:
    """One last try at the records a full disk held back; say how many are lost if it still fails."""
    if d.storage.kept:
        d.storage.retry()
    if d.storage.kept:
        log.error("usage log still cannot be written: %d record(s) lost at stop (%s)", d.storage.kept,
                  d.storage.last_error)  # fmt: skip


def stop_server(d: Daemon) -> None:
    """Stop answering on the control socket."""
    if d.server is not None:
        d.server.stop()


def stop_streamer(d: Daemon) -> None:
    """Close the firmware's port."""
    if d.streamer is not None:
        d.streamer.close()
