"""`fabnode region report`: the region's figures equal the nodes' own, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import struct
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fabnode.cli import app
from fabnode.envelope import parse_envelope
from fabnode.region.store import RegionStore
from tests.region_support import (  # noqa: F401  (region_target is a fixture)
    Node,
    assert_report_matches_nodes,
    cli_app,
    make_node,
    outbox_messages,
    region_target,
)

NOW = datetime(2025, 3, 20, tzinfo=UTC)


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> list[Node]:
    root = tmp_path_factory.mktemp("nodes")
    return [make_node(root, "north", "mini-1", 1, days=3), make_node(root, "north", "laser-1", 2, days=2),
            make_node(root, "south", "mk4", 3, days=4)]  # fmt: skip


def fill(target: str, nodes: list[Node], skip: set[tuple[str, int]] = frozenset()) -> None:  # type: ignore[assignment]
    with RegionStore.open(target) as store:
        for node in nodes:
            envs = [
                parse_envelope(p, t) for t, p, seq in outbox_messages(node) if (node.machine, seq) not in skip
            ]
            for start in range(0, len(envs), 25):  # in batches, as the collector stores them
                store.store(envs[start : start + 25], NOW)


def report(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli_app(), ["region", "report", *args])
    return result.exit_code, result.output


def test_the_report_equals_the_sum_of_the_nodes_own_figures(region_target: str, nodes: list[Node]) -> None:  # noqa: F811
    fill(region_target, nodes)
    code, out = report("--db", region_target, "--json")
    assert code == 0, out
    data = json.loads(out)
    assert_report_matches_nodes(data, nodes)
    assert data["totals"]["outcomes"]["interrupted"] == 3  # one power cut per node
    assert data["totals"]["gaps"] == 0 and all(m["gaps"] == 0 for m in data["machines"])
    # Members of the north lab use both its machines: counted once in the region's total.
    used: set[str] = set()
    for node in nodes:
        with node.open() as log:
            used |= {r[0] for r in log.db.execute(
                "SELECT member_hash FROM members WHERE id IN (SELECT member_id FROM sessions)")}  # fmt: skip
    assert data["totals"]["members"] == len(used) < sum(m["members"] for m in data["machines"])


def test_records_resent_are_counted_once(tmp_path: Path, nodes: list[Node]) -> None:
    target = str(tmp_path / "region.db")
    fill(target, nodes[:1])
    fill(target, nodes[:1])
    code, out = report("--db", target, "--json")
    assert code == 0, out
    assert_report_matches_nodes(json.loads(out), nodes[:1])


def test_since_drops_earlier_records_like_the_nodes_since(tmp_path: Path, nodes: list[Node]) -> None:
    target = str(tmp_path / "region.db")
    fill(target, nodes)
    code, out = report("--db", target, "--json", "--since", "2025-03-06")
    assert code == 0, out
    machines = {m["machine"]: m for m in json.loads(out)["machines"]}
    args = ["usage", "summary", "--by", "machine", "--format", "json", "--since", "2025-03-06"]
    result = CliRunner().invoke(app, [*args, "--state-dir", str(nodes[2].state_dir)])
    (row,) = json.loads(result.stdout)["rows"]
    assert machines["mk4"]["jobs"] == row["jobs"] < 21
    assert machines["mk4"]["job_hours"] == pytest.approx(row["hours"], abs=1e-3)


def test_a_missing_seq_shows_as_a_gap_in_every_format(tmp_path: Path, nodes: list[Node]) -> None:
    target = str(tmp_path / "region.db")
    fill(target, nodes[:2], skip={("mini-1", 7), ("mini-1", 8), ("mini-1", 30)})
    code, out = report("--db", target, "--json")
    mini = next(m for m in json.loads(out)["machines"] if m["machine"] == "mini-1")
    assert (mini["gaps"], mini["missing"], mini["acked_seq"]) == (3, [[7, 8], [30, 30]], 6)
    code, table = report("--db", target)
    assert code == 0
    assert "north/mini-1: stored up to seq 6, missing 7-8, 30" in table
    assert "laser-1: " not in table  # no gap there
    code, text = report("--db", target, "--csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["machine"], r["gaps"]) for r in rows] == [("laser-1", "0"), ("mini-1", "3")]
    assert set(rows[0]) >= {"lab", "machine", "jobs", "sessions", "hours", "filament_kg", "laser_hours",
                            "members", "completed", "cancelled", "failed", "interrupted"}  # fmt: skip


def test_plot_writes_a_png_of_hours_per_week_per_lab(tmp_path: Path, nodes: list[Node]) -> None:
    target, png = str(tmp_path / "region.db"), tmp_path / "weeks.png"
    fill(target, nodes)
    code, out = report("--db", target, "--json", "--plot", str(png))
    assert code == 0, out
    weeks = json.loads(out)["weeks"]
    assert set(weeks) == {"north", "south"} and "2025-03-03" in weeks["north"]
    width, height, pixels = read_png(png.read_bytes())
    assert width >= 420 and height >= 300
    colours = {pixels[i : i + 3] for i in range(0, len(pixels), 3)}
    assert {bytes((31, 119, 180)), bytes((255, 127, 14))} <= colours  # one bar colour per lab


def read_png(data: bytes) -> tuple[int, int, bytes]:
    """Width, height and RGB pixels of an 8-bit RGB PNG without filters (what region_plot writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        assert struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])[0] == zlib.crc32(kind + body)
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour) == (8, 2)
    raw = zlib.decompress(chunks[b"IDAT"])
    assert len(raw) == height * (1 + 3 * width)
    return (
        width,
        height,
        b"".join(raw[y * (1 + 3 * width) + 1 : (y + 1) * (1 + 3 * width)] for y in range(height)),
    )


def test_a_report_on_a_missing_store_says_so(tmp_path: Path) -> None:
    code, out = report("--db", str(tmp_path / "nope.db"))
    assert code == 1 and f"no region store at {tmp_path / 'nope.db'}" in out
    assert not (tmp_path / "nope.db").exists()


def test_csv_and_json_together_are_refused(tmp_path: Path) -> None:
    code, out = report("--db", str(tmp_path / "x.db"), "--csv", "--json")
    assert code == 2 and "choose one of --csv and --json" in out


def test_an_empty_store_reports_no_records(tmp_path: Path) -> None:
    RegionStore.open(tmp_path / "region.db").close()
    assert report("--db", str(tmp_path / "region.db")) == (0, "no records\n")
    code, out = report("--db", str(tmp_path / "region.db"), "--json")
    assert code == 0 and json.loads(out)["totals"]["jobs"] == 0
