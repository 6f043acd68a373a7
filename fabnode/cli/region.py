"""`fabnode collect`: the region's collector; `fabnode region report` and `fabnode region rejected`."""

from __future__ import annotations

import csv
import io
import json
import logging
import signal
import socket
import sys
import threading
from datetime import date
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from fabnode.cli import exits

if TYPE_CHECKING:
    from fabnode.region.store import RegionStore

DbOption = Annotated[
    str, typer.Option("--db", help="The region store: an SQLite file, or a postgresql://user@host/db URL.")
]


def _open_store(db: str, create: bool) -> RegionStore:
    """Open the store, or exit 1 with the reason. Only the collector (create) makes a store: a report
    never creates an SQLite file, nor the region's tables in whatever database it is given."""
    from fabnode.region.sql import open_database
    from fabnode.region.store import RegionStore, RegionStoreError

    if not create and "://" not in db and not Path(db).exists():
        exits.fail(f"no region store at {db}: give the file `fabnode collect --db` writes to", exits.FAILED)
    try:
        if create:
            return RegionStore.open(db)
        database = open_database(db, read_only=True)
    except RegionStoreError as exc:
        exits.fail(str(exc), exits.FAILED)
    from fabnode.region.store import SCHEMA_VERSION

    try:
        rows = database.execute("SELECT value FROM region_meta WHERE key = 'schema_version'")
    except Exception:  # no such table: sqlite3 and psycopg each say it their own way
        database.close()
        exits.fail(f"{_shown(db)} holds no region store (no region_meta table): give the database "
                   "`fabnode collect --db` writes to; nothing was created", exits.FAILED)
    version = int(rows[0][0]) if rows else 0
    if version != SCHEMA_VERSION:  # a report reads; only the collector migrates the store
        database.close()
        newer = "a newer fabnode wrote it" if version > SCHEMA_VERSION else "run this fabnode's `fabnode " \
            "collect` once on it to upgrade it"
        exits.fail(f"{_shown(db)} is region store schema {version}, this report reads {SCHEMA_VERSION}: "
                   f"{newer}; nothing was changed", exits.FAILED)
    return RegionStore(database, db)


def _shown(db: str) -> str:
    """The database as it may be printed: a URL without its password."""
    if "://" not in db or "@" not in db:
        return db
    scheme, _, rest = db.partition("://")
    credentials, _, host = rest.rpartition("@")
    return f"{scheme}://{credentials.split(':', 1)[0]}@{host}"


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
    from fabnode.config.settings import check_broker_url
    from fabnode.region.collector import Collector, CollectorConfig, subscription

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
        exits.error("warning: collectors sharing an SQLite file take turns writing; use PostgreSQL")
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
    from fabnode.region.report import build_report, report_csv, report_json, report_table

    if as_csv and as_json:
        raise typer.BadParameter("choose one of --csv and --json", param_hint="'--csv' / '--json'")
    day = _parse_day(since)
    store = _open_store(db, create=False)
    try:
        result = build_report(store, day)
    finally:
        store.close()
    if plot is not None:
        from fabnode.region.plot import write_hours_chart

        try:
            write_hours_chart(plot, result.weeks)
        except OSError as exc:
            exits.fail(f"cannot write {plot}: {exc.strerror}", exits.FAILED)
    if as_json:
        typer.echo(report_json(result))
    elif as_csv:
        typer.echo(report_csv(result))
    else:
        typer.echo(report_table(result) if result.machines else "no records")


def rejected(
    db: DbOption,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show the last N.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="JSON: one object per message.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV: one row per message.")] = False,
) -> None:
    """The messages set aside as invalid, newest first: when, topic, why, first bytes."""
    if as_csv and as_json:
        raise typer.BadParameter("choose one of --csv and --json", param_hint="'--csv' / '--json'")
    store = _open_store(db, create=False)
    try:
        rows = store.query(
            "SELECT received_at, topic, reason, size, head, seq FROM rejected ORDER BY id DESC LIMIT ?",
            [limit],
        )
    finally:
        store.close()
    keys = ["received", "topic", "reason", "bytes", "first_bytes", "seq"]  # seq: the node's, when it was sane
    if as_json:
        objects = [dict(zip(keys, (str(r[0]), r[1], r[2], r[3], r[4], r[5]), strict=True)) for r in rows]
        typer.echo(json.dumps(objects))
        return
    if as_csv:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(keys)
        writer.writerows([str(r[0]), r[1], r[2], r[3], r[4], "" if r[5] is None else r[5]] for r in rows)
        typer.echo(out.getvalue(), nl=False)
        return
    if not rows:
        typer.echo("no rejected messages")
        return
    from fabnode.tables import render_table

    table = [
        [str(r[0]), str(r[1]), "-" if r[5] is None else str(r[5]), str(r[2])[:60], str(r[3]),
         str(r[4])[:40].replace("\n", " ")]
        for r in rows
    ]  # fmt: skip
    typer.echo(render_table(["received", "topic", "seq", "reason", "bytes", "first bytes"], table))


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
