"""`fabnode collect`: the region's collector; `fabnode region report` and `fabnode region rejected`."""

from __future__ import annotations

import logging
import signal
import socket
import sys
import threading
from datetime import date
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from fabnode.config.settings import check_broker_url
from fabnode.region.collector import Collector, CollectorConfig, subscription
from fabnode.region.plot import write_hours_chart
from fabnode.region.report import build_report, report_csv, report_json, report_table
from fabnode.region.store import RegionStore, RegionStoreError
from fabnode.tables import render_table

DbOption = Annotated[
    str, typer.Option("--db", help="The region store: an SQLite file, or a postgresql://user@host/db URL.")
]


def _open_store(db: str, create: bool) -> RegionStore:
    """Open the store, or exit 1 with the reason; a report never creates an empty SQLite file."""
    if not create and "://" not in db and not Path(db).exists():
        typer.echo(f"error: no region store at {db}", err=True)
        raise typer.Exit(1)
    try:
        return RegionStore.open(db)
    except RegionStoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _parse_day(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a date: expected YYYY-MM-DD", param_hint="'--since'"
        ) from None


def _read_password(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise typer.BadParameter(f"{path}: {exc.strerror}", param_hint="'--password-file'") from None


def collect(
    broker: Annotated[str, typer.Option("--broker", help="mqtt://host[:port] or mqtts://host[:port].")],
    db: DbOption,
    group: Annotated[
        str | None,
        typer.Option("--group", help="Share one subscription with other collectors ($share/NAME)."),
    ] = None,
    prefix: Annotated[str, typer.Option("--prefix", help="Topic prefix of the region.")] = "fablab",
    client_id: Annotated[
        str | None,
        typer.Option(
            "--client-id",
            help="Fixed MQTT client id (the broker keeps this session's queue).",
            show_default="fabnode-collector-<hostname>",
        ),
    ] = None,
    username: Annotated[str | None, typer.Option("--username", help="Broker user name.")] = None,
    password_file: Annotated[
        Path | None, typer.Option("--password-file", help="File holding the broker password.")
    ] = None,
    ca_file: Annotated[Path | None, typer.Option("--ca-file", help="CA certificate for mqtts://.")] = None,
    client_cert: Annotated[
        Path | None, typer.Option("--client-cert", help="Client certificate (PEM).")
    ] = None,
    client_key: Annotated[Path | None, typer.Option("--client-key", help="Client key (PEM).")] = None,
    in_flight: Annotated[
        int, typer.Option("--in-flight", min=1, max=65535, help="Messages sent to us before our acks.")
    ] = 200,
    session_expiry: Annotated[
        int,
        typer.Option(
            "--session-expiry", min=60, help="Seconds the broker keeps our queue while we are away."
        ),
    ] = 7 * 86400,
) -> None:
    """Subscribe to every node's telemetry, store each record once, acknowledge it end to end."""
    check_broker_url(broker, lambda msg: typer.BadParameter(msg, param_hint="'--broker'"))
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    config = CollectorConfig(
        broker=broker, prefix=prefix, group=group,
        client_id=client_id or f"fabnode-collector-{socket.gethostname()}",
        session_expiry_s=session_expiry, receive_maximum=in_flight,
        username=username, password=_read_password(password_file),
        ca_file=ca_file, client_cert=client_cert, client_key=client_key,
    )  # fmt: skip
    store = _open_store(db, create=True)
    if group and store.dialect == "sqlite":
        typer.echo("warning: collectors sharing an SQLite file take turns writing; use PostgreSQL", err=True)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    collector = Collector(store, config)
    typer.echo(f"collecting {subscription(prefix, group)} from {broker} into {store.db.name} "
               f"as {config.client_id}", err=True)  # fmt: skip
    collector.start()
    try:
        collector.run(stop)
    finally:
        collector.close()
        store.close()
        s = collector.stats
        typer.echo(f"stopped: {s.stored} stored, {s.duplicates} duplicates, {s.rejected} rejected", err=True)


def report(
    db: DbOption,
    since: Annotated[
        str | None, typer.Option("--since", help="Records started on or after this UTC day.")
    ] = None,
    as_csv: Annotated[bool, typer.Option("--csv", help="One CSV row per machine.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON: totals, machines, weeks.")] = False,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Also write a PNG of hours in use per week per lab.")
    ] = None,
) -> None:
    """Per lab and machine: hours in use, jobs and outcomes, filament, laser hours, members, gaps."""
    if as_csv and as_json:
        raise typer.BadParameter("choose one of --csv and --json", param_hint="'--csv' / '--json'")
    day = _parse_day(since)
    store = _open_store(db, create=False)
    try:
        result = build_report(store, day)
    finally:
        store.close()
    if plot is not None:
        try:
            write_hours_chart(plot, result.weeks)
        except OSError as exc:
            typer.echo(f"error: cannot write {plot}: {exc.strerror}", err=True)
            raise typer.Exit(1) from None
    if as_json:
        typer.echo(report_json(result))
    elif as_csv:
        typer.echo(report_csv(result))
    else:
        typer.echo(report_table(result) if result.machines else "no records")


def rejected(
    db: DbOption,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show the last N.")] = 20,
) -> None:
    """The messages set aside as invalid, newest first: when, topic, why, first bytes."""
    store = _open_store(db, create=False)
    try:
        rows = store.query(
            "SELECT received_at, topic, reason, size, head FROM rejected ORDER BY id DESC LIMIT ?", [limit]
        )
    finally:
        store.close()
    if not rows:
        typer.echo("no rejected messages")
        return
    table = [
        [str(r[0]), str(r[1]), str(r[2])[:60], str(r[3]), str(r[4])[:40].replace("\n", " ")] for r in rows
    ]
    typer.echo(render_table(["received", "topic", "reason", "bytes", "first bytes"], table))


def register(app: typer.Typer) -> None:
    """Add `collect` and `region report|rejected` to the app."""
    app.command("collect")(collect)
    region_app = typer.Typer(help="The region's store of every node's telemetry.", no_args_is_help=True)
    region_app.command("report")(report)
    region_app.command("rejected")(rejected)
    app.add_typer(region_app, name="region")


def standalone_app() -> typer.Typer:
    """An app with only these verbs (`python -m fabnode.cli.region ...` until the main app lists them)."""
    app = typer.Typer(
        name="fabnode", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False
    )
    register(app)
    return app


if __name__ == "__main__":
    standalone_app()()
