"""The Marlin simulator's `virtual_printer` mode answers lines as OctoPrint's virtual printer does."""

from __future__ import annotations

import pytest

from simulators.marlin.simulator import MarlinSimulator
from simulators.marlin.virtual import VirtualPrinterChecker
from tests.unit.test_sim_marlin import make_host, numbered

__all__ = ["make_host"]  # the fixture, shared with test_sim_marlin


def test_a_duplicate_line_is_refused_with_the_line_it_expects_and_the_one_it_got() -> None:
    checker = VirtualPrinterChecker()
    assert checker.check(numbered(0, "M110 N0").decode().strip()).accepted
    assert checker.check(numbered(1, "G1 X1").decode().strip()).accepted
    verdict = checker.check(numbered(1, "G1 X1").decode().strip())
    assert (verdict.accepted, verdict.error) == (False, "expected line 2 got 1")
    assert checker.last_n == 1


def test_a_checksum_error_asks_for_the_line_after_every_line_with_a_good_checksum() -> None:
    # current_line counts refused lines with good checksums too (virtual.py lines 405-413)
    checker = VirtualPrinterChecker()
    checker.check(numbered(0, "M110 N0").decode().strip())
    checker.check(numbered(2, "G1 X2").decode().strip())  # refused: expected 1
    bad = numbered(1, "G1 X1").decode().strip().replace("X1", "X7")
    verdict = checker.check(bad)
    assert (verdict.accepted, verdict.error) == (False, "Checksum mismatch")
    assert checker.last_n + 1 == 2


def test_every_line_behind_a_bad_one_is_answered_in_order_without_a_flush(make_host) -> None:
    host = make_host(virtual_printer=True)
    host.send(numbered(0, "M110 N0"))
    assert host.oks(1) == ["ok"]
    bad = numbered(1, "G1 X1").replace(b"X1", b"X7")
    host.send(bad, numbered(2, "G1 X2"), numbered(1, "G1 X1"), numbered(1, "G1 X1"))
    assert host.oks(4) == [
        "Error: Checksum mismatch", "Resend:1", "ok",
        "Error: expected line 1 got 2", "Resend:1", "ok",
        "ok",
        "Error: expected line 2 got 1", "Resend:2", "ok",
    ]  # fmt: skip
    assert host.sim.executed == ["M110 N0", "G1 X1"]


def test_resend_with_timeout_counts_its_line_taken_and_ignores_the_next(make_host) -> None:
    host = make_host(virtual_printer=True, virtual_errors=((2, "resend_with_timeout"),))
    host.send(numbered(0, "M110 N0"), numbered(1, "G1 X1"), numbered(2, "G1 X2"), numbered(3, "G1 X3"))
    assert host.oks(3) == ["ok", "ok", "Error: Missing checksum", "Resend:2", "ok"]
    host.send(numbered(4, "G1 X4"))
    assert host.oks(1) == ["Error: expected line 3 got 4", "Resend:3", "ok"]
    assert host.sim.executed == ["M110 N0", "G1 X1"]


def test_missing_lineno_says_so_and_answers_nothing_else(make_host) -> None:
    host = make_host(virtual_printer=True, virtual_errors=((1, "missing_lineno"),))
    host.send(numbered(0, "M110 N0"), numbered(1, "G1 X1"), numbered(2, "G1 X2"))
    assert host.oks(2) == [
        "ok", "Error: No Line Number with checksum, Last Line: 0",
        "Error: expected line 1 got 2", "Resend:1", "ok",
    ]  # fmt: skip


def test_an_unknown_virtual_error_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'resend_twice' is not one of"):
        MarlinSimulator(virtual_printer=True, virtual_errors=((5, "resend_twice"),))
