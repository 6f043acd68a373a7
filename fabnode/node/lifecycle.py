"""The daemon's parts that start and stop with it: the telemetry publisher and the last records.

Called from the loop's controller thread (at start-up, on a reload and at stop), each with only what it
uses; kept apart so that fabnode.node.loop stays about the event loop and the firmware.
"""

from __future__ import annotations

import logging

from fabnode.config.settings import Config
from fabnode.node.logsafe import shown
from fabnode.node.ports import Publisher
from fabnode.records.storage_guard import StorageGuard
from fabnode.records.usage import UsageLog

log = logging.getLogger("fabnode.daemon")


def start_telemetry(config: Config, usage: UsageLog) -> Publisher | None:
    """Start the MQTT publisher when a broker is configured; on failure run on (records wait): None."""
    if config.telemetry.broker is None:
        return None
    from fabnode.telemetry.publisher import TelemetryError, TelemetryPublisher, TelemetrySettings

    try:
        publisher = TelemetryPublisher(usage, TelemetrySettings.from_config(config))
        publisher.start()
    except TelemetryError as exc:  # access control matters more: run on, records wait in the outbox
        log.error("telemetry not started (records wait in the outbox): %s", shown(str(exc)))
        return None
    log.info("telemetry to %s", config.telemetry.broker)
    return publisher


def stop_telemetry(publisher: Publisher | None) -> None:
    """Stop the publisher, if one runs."""
    if publisher is not None:
        publisher.stop()


def last_records(storage: StorageGuard) -> None:
    """One last try at the records a full disk held back; say how many are lost if it still fails."""
    if storage.kept:
        storage.retry()
    if storage.kept:
        log.error("usage log still cannot be written: %d record(s) lost at stop (%s)", storage.kept,
                  storage.last_error)  # fmt: skip
