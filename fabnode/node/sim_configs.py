"""The built-in configs of simulated machines: `fabnode run --simulate` and the demo's nodes.

Plain TOML text, so that what a simulated node runs on is a file a newcomer can read and edit.
"""

from __future__ import annotations

_PRINTER = """\
[node]
lab = "{lab}"
machine = "{machine}"

[serial]
port = "sim"

[machine]
kind = "printer"
firmware = "marlin"
material = "PLA"

[materials.PLA]
price_per_kg = 25.0

[session]
idle_timeout_s = 900.0
cooldown_hotend_below_c = 50.0
checkpoint_every_s = 1.0

[gpio]
backend = "sim"

[reader]
backend = "sim"
"""

_LASER = """\
[node]
lab = "{lab}"
machine = "{machine}"

[serial]
port = "sim"
rx_window = 128

[machine]
kind = "laser"
firmware = "grbl"
material = "plywood-3mm"
volume_min_mm = [-300.0, -300.0, -50.0]
volume_max_mm = [300.0, 300.0, 50.0]
max_line_length = 80

[materials.plywood-3mm]
price_per_laser_hour = 12.0

[session]
idle_timeout_s = 900.0
fume_runon_s = {fume_runon_s}
checkpoint_every_s = 1.0

[gpio]
backend = "sim"
lid_pin = 6

[reader]
backend = "sim"
"""


def simulated_toml(
    laser: bool,
    *,
    lab: str = "demo-lab",
    machine: str | None = None,
    fume_runon_s: float = 10.0,
    written_by: str = "fabnode run --simulate",
    extra: str = "",
) -> str:
    """The TOML of a simulated Prusa MINI class printer (Marlin) or diode laser (GRBL 1.1)."""
    if laser:
        what = "a simulated diode laser (GRBL 1.1)"
        body = _LASER.format(lab=lab, machine=machine or "sim-laser", fume_runon_s=fume_runon_s)
    else:
        what = "a simulated Prusa MINI class printer (Marlin)"
        body = _PRINTER.format(lab=lab, machine=machine or "sim-printer")
    return f"# Written by `{written_by}`: {what}.\n{body}{extra}"
