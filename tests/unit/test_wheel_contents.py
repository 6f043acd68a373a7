"""The wheel a Pi installs holds the node, the drivers and the simulators, never the demo."""

from __future__ import annotations

import tomllib

from setuptools import find_packages

from tests.conftest import REPO


def test_the_wheels_packages_leave_the_demo_out() -> None:
    find = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    packages = find_packages(str(REPO), include=find["include"])
    assert "fabnode.node" in packages and "drivers.marlin" in packages and "simulators.grbl" in packages
    assert not [p for p in packages if p == "demo" or p.startswith("demo.") or ".demo" in p]
    assert (REPO / "demo" / "__main__.py").is_file()  # it is still in the checkout, for make demo
