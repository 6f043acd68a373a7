"""`fabnode telemetry status` (the outbox's backlog, from the usage log) and `fabnode telemetry flush`
(connect, send the backlog, wait until the region's ack covers it; exit 0 only then)."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fabnode.cli import exits
from fabnode.cli.usage import StateDirOption, open_existing_log
from fabnode.node.control import ControlError, request
from fabnode.paths import control_socket_path, resolve_config, resolve_state_dir, usage_db_path

if TYPE_CHECKING:
    from fabnode.records.usage import UsageLog
    from fabnode.telemetry.publisher import TelemetrySettings

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="The node's TOML config (default: $FABNODE_CONFIG).", show_default=False),
]
BrokerOption = Annotated[
    str | None,
    typer.Option("--broker", help="mqtt://host[:port] or mqtts://host[:port]; overrides the config's."),
]
TimeoutOption = Annotated[
    float, typer.Option("--timeout", min=0.1, help="Seconds to wait for the region's ack.")
]

_LABELS = (
    ("backlog", "waiting for the region's ack"),
    ("sent_unacked", "of which sent (PUBACKed)"),
    ("oldest_unacked_seq", "oldest waiting: seq"),
    ("oldest_unacked", "oldest waiting: written"),
    ("acked_through", "acknowledged through seq"),
    ("last_seq", "last seq"),
    ("last_sent_at", "last sent"),
    ("last_acked_at", "last acknowledged"),
)


def _daemon_connection(state_dir: Path | None) -> dict[str, Any]:
    """The running daemon's publisher: connected, last PUBACK, last ack, last error (or why unknown)."""
    try:
        reply = request(control_socket_path(resolve_state_dir(state_dir)), {"cmd": "telemetry"}, timeout=5.0)
    except ControlError as exc:
        return {"daemon": False, "detail": str(exc)}
    live = reply.get("telemetry") if reply.get("ok") else None
    if live is None:
        why = reply.get("error") or "no broker configured: records wait in the outbox"
        return {"daemon": True, "detail": why}
    keys = ("connected", "last_puback_at", "last_ack_seq", "in_flight", "last_error")
    return {"daemon": True, **{key: live.get(key) for key in keys}}


def _fail(message: str, code: int) -> typer.Exit:
    exits.error(message)
    return typer.Exit(code)


def _settings(config: Path | None, broker: str | None) -> tuple[TelemetrySettings, Path | None]:
    from fabnode.config.settings import ConfigError, load_config
    from fabnode.telemetry.publisher import TelemetryError, TelemetrySettings

    path = resolve_config(config)
    if path is None:
        raise _fail("no config: pass --config FILE (or set FABNODE_CONFIG); it names the lab and machine", 2)
    try:
        cfg = load_config(path)
        settings = TelemetrySettings.from_config(cfg, broker)
    except (ConfigError, TelemetryError) as exc:
        raise _fail(str(exc), 2) from None
    except OSError as exc:
        raise _fail(f"cannot read {path}: {exc.strerror or exc}", 2) from None
    # Beside a running daemon: its own client id, no session left behind, no online/offline status.
    flush_settings = dataclasses.replace(settings, client_id=f"{settings.mqtt_client_id}-flush",
                                         announce=False, persistent_session=False)  # fmt: skip
    return flush_settings, cfg.node.state_dir


def _print_status(stats: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(stats, indent=2, sort_keys=True))
        return
    for key, label in _LABELS:
        value = stats.get(key)
        typer.echo(f"{label + ':':<32} {'-' if value is None else value}")
    connection = stats["connection"]
    if "connected" not in connection:
        typer.echo(f"{'connection:':<32} unknown ({connection['detail']})")
        return
    state = "connected" if connection["connected"] else "not connected"
    error = f"; last error: {connection['last_error']}" if connection["last_error"] else ""
    typer.echo(f"{'connection:':<32} {state}{error}")
    typer.echo(f"{'last PUBACK:':<32} {connection['last_puback_at'] or '-'}")


def register(app: typer.Typer) -> None:
    """Add `fabnode telemetry status|flush` to the app."""
    group = typer.Typer(help="The node's telemetry to the region's MQTT broker.", no_args_is_help=True)

    @group.command("status")
    def status(state_dir: StateDirOption = None,
               as_json: bool = typer.Option(False, "--json", help="One JSON object.")) -> None:
        """The outbox (backlog, oldest, last sent and acked) and, when the daemon runs, its connection."""
        with open_existing_log(state_dir) as log:
            stats = log.outbox_stats()
        stats["connection"] = _daemon_connection(state_dir)
        _print_status(stats, as_json)

    @group.command("flush")
    def flush(
        config: ConfigOption = None,
        broker: BrokerOption = None,
        timeout: TimeoutOption = 60.0,
        state_dir: StateDirOption = None,
    ) -> None:
        """Send the backlog now and wait until the region acknowledges all of it (exit 0), or time out (1)."""
        from fabnode.records.usage import UsageLog, UsageLogError

        settings, configured_dir = _settings(config, broker)
        db = usage_db_path(resolve_state_dir(state_dir, configured_dir))
        if not db.exists():  # nothing was ever recorded here: nothing to send, and no database to create
            raise _fail(f"no usage log at {db}: nothing to send (give the node's --state-dir or set "
                        "FABNODE_STATE_DIR)", 1)
        try:
            log = UsageLog.open(db)
        except UsageLogError as exc:
            raise _fail(str(exc), 1) from None
        with log:
            _flush(log, settings, timeout)

    app.add_typer(group, name="telemetry")


def _flush(log: UsageLog, settings: TelemetrySettings, timeout: float) -> None:
    from fabnode.telemetry.publisher import TelemetryError, TelemetryPublisher

    target = log.last_outbox_seq()
    if log.outbox_stats()["backlog"] == 0:
        typer.echo(f"nothing to send: the region has acknowledged every message (through seq {target})")
        return
    logging.getLogger("fabnode.telemetry").setLevel(logging.ERROR)  # the final message says it all
    publisher = TelemetryPublisher(log, settings)
    try:
        publisher.start()
    except TelemetryError as exc:
        raise _fail(str(exc), 2) from None
    try:
        # Give up early only on what waiting cannot fix: an untrusted certificate, a refused login.
        publisher.wait_until(lambda s: (s["last_ack_seq"] or 0) >= target
                             or s["error_kind"] in ("tls", "refused"), timeout)  # fmt: skip
        status = publisher.status()
    finally:
        publisher.stop()
    if (status["last_ack_seq"] or 0) >= target:
        typer.echo(f"flushed: the region acknowledged every message through seq {target} "
                   f"({status['published']} sent to {settings.broker_url})")  # fmt: skip
        return
    left = log.outbox_stats()["backlog"]
    idle = "connected, no ack from the region" if status["connected"] else "not connected"
    why = status["last_error"] or idle
    when = "" if status["error_kind"] in ("tls", "refused") else f" after {timeout:g}s"
    raise _fail(f"{left} message(s) not acknowledged by the region{when} "
                f"(acknowledged through seq {status['last_ack_seq']}): {why}", 1)  # fmt: skip
