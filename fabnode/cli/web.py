"""`fabnode web ...`: the node's HTTP API for slicers (OctoPrint's), and the lab key for shared PCs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from fabnode.cli.members import lab_context
from fabnode.cli.usage import StateDirOption
from fabnode.records import api_keys


def register(app: typer.Typer) -> None:
    """Add the `web` group to the app."""
    web = typer.Typer(help="The node's HTTP API for slicers: the lab key.", no_args_is_help=True)

    @web.command("lab-key")
    def lab_key(
        new: Annotated[bool, typer.Option(
            "--new", help="End the lab key and make a new one (every lab PC needs the new one).")] = False,
        state_dir: StateDirOption = None,
    ) -> None:
        """Print the lab key, which shared lab PCs put in the slicer's API key field (uploads only)."""
        with lab_context(state_dir) as (log, secret):
            key = api_keys.lab_key(log.db, secret, now=datetime.now(UTC), new=new)
        if new:
            typer.echo("a new lab key; the old one no longer works:", err=True)
        typer.echo(key)

    app.add_typer(web, name="web")
