"""The demo's scripted day, step by step; demo.main runs it and cleans up after it.

Every action goes through the `fabnode` CLI in a subprocess, as a member or a technician would type it;
only the frequent looks at a node's status go straight to its control socket (demo.watch).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from demo import files as demo_files
from demo.compare import compare, node_figures, render
from demo.slicer import send_to_printer
from demo.support import (
    FABNODE,
    DemoError,
    Narrator,
    Runner,
    Service,
    log_tail,
    start_broker,
    wait_for,
)
from demo.watch import Node, watch_job, watch_until_locked
from fabnode.mosquitto import mosquitto_binary

ADA, TESS, STRANGER = "04:A0:00:01", "04:7E:55:01", "04:DE:AD:99"
COLLECTOR_ID = "fabnode-demo-collector"
START_WAIT_S, JOB_WAIT_S, LOCK_WAIT_S, TELEMETRY_WAIT_S = 60.0, 150.0, 90.0, 60.0
# Early, so the job (about 8 s on the wire with --fast) still runs when the tap lands on a loaded machine.
BADGE_OUT_AT_PERCENT = 10.0


def demo_env(root: Path) -> dict[str, str]:
    """The children's environment: one lab secret for both nodes, no stray state dir or config."""
    env = dict(os.environ)
    for name in ("FABNODE_STATE_DIR", "FABNODE_CONFIG"):
        env.pop(name, None)
    env["FABNODE_SECRET_FILE"] = str(root / "lab-secret.key")
    env["PYTHONUNBUFFERED"] = "1"
    repo = str(Path(__file__).resolve().parents[1])  # `python -m fabnode` from any working directory
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, env.get("PYTHONPATH", "")) if p)
    return env


class Day:
    """The scripted day over two nodes, a broker and the collector; `services` are stopped by stop_all()."""

    def __init__(self, root: Path, narrator: Narrator, *, sim_speed: float, fast: bool, use_broker: bool
                 ) -> None:
        self.root = root
        self.say = narrator
        self.sim_speed = sim_speed
        self.fast = fast
        self.use_broker = use_broker
        self.printer_dir, self.laser_dir = root / "printer", root / "laser"
        self.env = demo_env(root)
        self.cli = Runner(narrator, self.env)
        self.services: list[Service] = []
        self.broker_url: str | None = None
        self.region_db = root / "region.db"
        self.nodes: dict[str, Node] = {}
        self.cooling: dict[str, Any] = {}  # the printer's status when its job ended

    def run(self) -> dict[str, Any]:
        """The whole day; the result the demo writes to demo-result.json."""
        jobs = self.set_up()
        self.start_region()
        self.start_nodes()
        self.enrol()
        self.refuse_stranger()
        self.print_and_badge_out(jobs[0])
        self.cool_down()
        self.maintenance()
        self.engrave(jobs[1])
        return self.reports()

    # --- the morning: set up, start everything ------------------------------------------------------

    def set_up(self) -> tuple[demo_files.Job, demo_files.Job]:
        """Configs, G-code and the lab secret's place."""
        rel = self.say.relative
        self.say.step(f"Set up a fresh lab in {rel(str(self.root))}/: one folder per node, and one lab "
                      "secret both nodes share, so a member is the same keyed hash on every machine of "
                      f"the lab (FABNODE_SECRET_FILE={rel(self.env['FABNODE_SECRET_FILE'])}).")  # fmt: skip
        gcode = self.root / "gcode"
        gcode.mkdir()
        (self.root / "printer.toml").write_text(demo_files.PRINTER_TOML)
        (self.root / "laser.toml").write_text(demo_files.LASER_TOML)
        jobs = demo_files.printer_job(gcode, self.fast), demo_files.laser_job(gcode, self.fast)
        configs = [rel(str(self.root / f"{n}.toml")) for n in ("printer", "laser")]
        self.say.say(f"Node configs: {configs[0]} and {configs[1]} (the built-in simulated machines, "
                     "with short timers for the demo).")
        self.say.say(f"Today's print: {jobs[0].about}.\nToday's engraving: {jobs[1].about}.")
        return jobs

    def start_region(self) -> None:
        """A private mosquitto and the collector, or the reason there is none."""
        binary = mosquitto_binary() if self.use_broker else None
        if binary is None:
            why = "--no-broker was given" if not self.use_broker else "mosquitto is not installed " \
                  "(sudo apt install mosquitto)"
            self.say.step(f"No MQTT broker for the region: {why}. The nodes run all the same; their records "
                          "wait in each node's outbox and go out when a broker is reachable.")
            return
        self.say.step("Start the region's MQTT broker: a private mosquitto on a free port, from a config "
                      "written for this run (loopback only).")
        folder = self.root / "broker"
        self.say.command([binary, "-c", str(folder / "mosquitto.conf")])
        broker, self.broker_url = start_broker(binary, folder)
        self.services.append(broker)
        self.say.say(f"listening at {self.broker_url}")
        self.start_collector(folder / "mosquitto.log")

    def start_collector(self, broker_log: Path) -> None:
        """`fabnode collect` in the background; wait until the broker has its subscription."""
        assert self.broker_url is not None
        self.say.step("Start the region's collector: it subscribes to every node's telemetry, stores each "
                      "record once (by its message id) in an SQLite file, then acknowledges it.")
        argv = [*FABNODE, "collect", "--broker", self.broker_url, "--db", str(self.region_db),
                "--client-id", COLLECTOR_ID]  # fmt: skip
        self.say.command(argv)
        collector = Service("collector", argv, self.root / "collector.log").start(self.env)
        self.services.append(collector)
        # mosquitto logs each subscription (`log_type subscribe`): from then on no node's message is lost.
        wait_for("the collector's subscription at the broker",
                 lambda: f"{COLLECTOR_ID} 1 " in log_tail(broker_log, 200), START_WAIT_S,
                 alive=collector.check_alive)  # fmt: skip
        self.say.say("subscribed")

    def start_nodes(self) -> None:
        """Both daemons; wait until each answers on its control socket."""
        for name, folder, about in (
            ("printer", self.printer_dir, "a simulated Marlin printer (Prusa MINI class) on a pty"),
            ("laser", self.laser_dir, "a simulated GRBL 1.1 diode laser with a lid switch"),
        ):
            self.say.step(f"Start the {name}'s node: `fabnode run --simulate` is the real daemon with "
                          f"{about}, a simulated relay, LEDs, e-stop and badge reader. Machine time runs "
                          f"{self.sim_speed:g}x faster; the serial wire runs at its real baud rate.")
            argv = [*FABNODE, "run", "--simulate", "--config", str(self.root / f"{name}.toml"),
                    "--state-dir", str(folder), "--sim-speed", f"{self.sim_speed:g}"]  # fmt: skip
            if self.broker_url is not None:
                argv += ["--broker", self.broker_url]
            self.say.command(argv)
            service = Service(f"{name} node", argv, self.root / f"{name}.log").start(self.env)
            self.services.append(service)
            self.nodes[name] = Node(name, folder, service.check_alive)
        for node in self.nodes.values():
            wait_for(f"the {node.name} node to answer on its control socket", node.answers, START_WAIT_S)
        self.say.step("Both nodes are up. Ask the printer how it is (any technician can, on the node):")
        self.cli.fabnode("status", "--state-dir", str(self.printer_dir))

    def enrol(self) -> None:
        """Ada (trained on both machines) and Tess (technician), enrolled once for the whole lab."""
        if self.broker_url is None:
            self.say.step("Enrol the members on each node (with no broker the nodes cannot share the lab "
                          "directory): Ada, trained on the printer and the laser, and Tess, a technician. "
                          "A badge is stored as a keyed hash, never as its UID.")
            for folder in (self.printer_dir, self.laser_dir):
                self._enrol_on(folder)
            return
        self.say.step("Enrol the members once, on the printer's node: Ada, trained on the printer and the "
                      "laser, and Tess, a technician (technicians may use every machine). A badge is stored "
                      "as a keyed hash, never as its UID; each change is sealed with the lab secret and "
                      "shared with the lab's other nodes over the broker.")
        self._enrol_on(self.printer_dir)
        printer = self._digest(self.printer_dir)
        wait_for("the laser's node to hold the same lab directory as the printer's",
                 lambda: self._digest(self.laser_dir) == printer, START_WAIT_S)
        self.say.step("The laser's node holds the same directory (the same digest) without anyone enrolling "
                      "there:")
        self.cli.fabnode("members", "digest", "--state-dir", str(self.laser_dir))

    def _enrol_on(self, folder: Path) -> None:
        where = ("--state-dir", str(folder))
        self.cli.fabnode("members", "add", "Ada", "--badge", ADA, *where)
        for machine in (demo_files.PRINTER, demo_files.LASER):
            self.cli.fabnode("members", "grant", "Ada", machine, *where)
        self.cli.fabnode("members", "add", "Tess", "--badge", TESS, "--role", "technician", *where)

    def _digest(self, folder: Path) -> str:
        done = self.cli.fabnode("members", "digest", "--state-dir", str(folder), quiet=True, show=False)
        return done.stdout.split()[0] if done.stdout.strip() else ""

    # --- the printer ----------------------------------------------------------------------------------

    def status_json(self, node: str) -> dict[str, Any]:
        """`fabnode status --json` through the CLI, shown; its parsed object."""
        done = self.cli.fabnode("status", "--json", "--state-dir", str(self.nodes[node].state_dir),
                                quiet=True)  # fmt: skip
        status: dict[str, Any] = json.loads(done.stdout)
        self.say.say(f"status --json: state {status['state']!r}, relay {json.dumps(status['relay'])}, "
                     f"member {json.dumps(status['member'])}")  # fmt: skip
        return status

    def expect(self, what: str, ok: bool, status: dict[str, Any]) -> None:
        """Stop the day when the node is not as the script says it must be."""
        if not ok:
            shown = {k: status.get(k) for k in ("state", "relay", "member", "fault", "session", "job")}
            raise DemoError(f"expected {what}; the node says {json.dumps(shown)}")

    def refuse_stranger(self) -> None:
        """An unknown badge: refused, locked, relay off."""
        self.say.step("A visitor taps a badge nobody enrolled on the printer: refused. The node flashes its "
                      "red LED and buzzes; the printer stays locked, its relay off.")
        self.cli.fabnode("badge", STRANGER, "--state-dir", str(self.printer_dir), ok=False)
        s = self.status_json("printer")
        self.expect("the printer locked with its relay off", s["state"] == "locked" and not s["relay"], s)

    def send_from_slicer(self, job: demo_files.Job) -> None:
        """Ada's job, uploaded through the OctoPrint API as PrusaSlicer sends it: it waits for her tap."""
        self.say.step("Ada gets her personal API key for her slicer (a technician makes it; it is shown "
                      "once and stored only as a keyed hash):")
        key = self.cli.fabnode("members", "key", "Ada", "--state-dir", str(self.printer_dir),
                               quiet=True).stdout.strip()  # fmt: skip
        url = str((self.nodes["printer"].status().get("web") or {}).get("url") or "")
        if not url:
            raise DemoError("the printer's node serves no web API (`fabnode status --json` has no web.url)")
        self.say.say(f"The printer's page and OctoPrint API: {url}/  (open it while the demo runs)")
        self.say.step("Ada slices her part and presses \"Send to printer\" in PrusaSlicer: it posts the "
                      "G-code to the node's OctoPrint API (POST /api/files/local: print=true, path, file; "
                      "X-Api-Key). The node checks the file at once, then holds it for her badge.")
        self.say.say(f"The file: {job.about}.")
        self.say.command(["POST", f"{url}/api/files/local", f"file={job.path.name}", "print=true"])
        status, reply = send_to_printer(url, key, job.path)
        if status != 201:
            raise DemoError(f"the upload was refused: HTTP {status}: {reply.get('error')}")
        queue = (self.nodes["printer"].status().get("web") or {}).get("uploads") or []
        waits = queue[0].get("waits_for") if queue else "?"
        self.say.say(f"HTTP 201 Created: {job.path.name} waits in the upload queue for {waits}; the printer "
                     "stays locked.")
        self.expect("the upload waiting in the queue", len(queue) == 1, self.nodes["printer"].status())

    def print_and_badge_out(self, job: demo_files.Job) -> None:
        """Ada's upload starts with her tap; she badges out during the job; the job runs to its end."""
        printer = self.nodes["printer"]
        self.send_from_slicer(job)
        self.say.step("Ada taps her badge on the printer: she is trained on it, so the relay switches on, "
                      "and the same tap starts her upload. The node streams it to the firmware line by line, "
                      "each line acknowledged.")
        self.cli.fabnode("badge", ADA, "--state-dir", str(self.printer_dir))
        # The tap opened her session at once; the upload is checked again aside, then streams.
        wait_for("Ada's upload to start", lambda: printer.status()["state"] == "running", JOB_WAIT_S)
        s = self.status_json("printer")
        job_now = s.get("job") or {}
        source = job_now.get("source")
        self.say.say(f"job source {json.dumps(source)}, uploaded by {json.dumps(job_now.get('uploaded_by'))}")
        running = s["state"] == "running" and s["relay"] and source == "upload"
        self.expect("Ada's upload running, relay on", running, s)
        self.say.say("Progress, as `fabnode status --json` reports it (percent, G-code lines acknowledged, "
                     "lines/s, ETA in wall-clock seconds):")
        self.say.command([*FABNODE, "status", "--json", "--state-dir", str(self.printer_dir)])
        s = watch_job(printer, self.say, JOB_WAIT_S,
                      until=lambda st: float((st.get("job") or {}).get("percent", 0)) >= BADGE_OUT_AT_PERCENT)
        self.expect("the print running", s["state"] == "running", s)
        self.say.step("Ada taps her badge again while the job runs: she leaves, the print goes on, and her "
                      "session will end when the job does.")
        self.cli.fabnode("badge", ADA, "--state-dir", str(self.printer_dir))
        # A look through the control socket, at once: a `fabnode status` process could start after the
        # short --fast job has ended on a busy machine.
        s = self.nodes["printer"].status()
        pending = bool((s.get("session") or {}).get("badge_out_pending"))
        self.say.say(f"status: state {s['state']!r}, relay {json.dumps(s['relay'])}, member "
                     f"{json.dumps(s['member'])}, session.badge_out_pending {json.dumps(pending)}")
        self.expect("the job running with the badge-out pending", pending and s["state"] == "running", s)
        self.say.step("The print goes on to its last line:")
        s = watch_job(printer, self.say, JOB_WAIT_S)
        last = s.get("last_job") or {}
        self.say.say(job_summary(last, job, self.sim_speed))
        self.expect("the print completed", last.get("status") == "completed", s)
        self.cooling = s

    def cool_down(self) -> None:
        """The relay stays on until the hotend is below the threshold, then the printer locks."""
        s = self.cooling
        self.say.step("The job is done and Ada has left, so the printer cools down: the relay stays on until "
                      "the hotend is below 50 °C, then switches off and the printer locks.")
        self.expect("the printer cooling down with its relay on", s["state"] == "cooldown" and s["relay"], s)
        s = watch_until_locked(self.nodes["printer"], self.say, LOCK_WAIT_S)
        self.say.say(f"state {s['state']!r}, relay off; hotend {_temp(s)} °C")

    def maintenance(self) -> None:
        """Tess opens and closes a maintenance session on the printer."""
        self.say.step("Tess, the technician, taps her badge on the printer for a check: technicians need no "
                      "training, and her session is marked maintenance.")
        self.cli.fabnode("badge", TESS, "--state-dir", str(self.printer_dir))
        s = self.status_json("printer")
        self.expect("a maintenance session, relay on", s["state"] == "maintenance" and s["relay"], s)
        self.say.step("Tess taps again to end it; the hotend is cold, so the printer locks at once.")
        self.cli.fabnode("badge", TESS, "--state-dir", str(self.printer_dir))
        watch_until_locked(self.nodes["printer"], self.say, LOCK_WAIT_S)

    # --- the laser ----------------------------------------------------------------------------------

    def engrave(self, job: demo_files.Job) -> None:
        """Ada engraves on the laser, then badges out: the fume extractor runs on, then it locks."""
        self.say.step("Ada taps her badge on the laser: she is trained on it too, so it unlocks.")
        self.cli.fabnode("badge", ADA, "--state-dir", str(self.laser_dir))
        s = self.status_json("laser")
        self.expect("the laser unlocked for Ada, relay on", s["state"] == "unlocked" and s["relay"], s)
        self.say.step("Ada starts her engraving. GRBL takes lines by character counting within its 128-byte "
                      "buffer; the laser-on time counts what the firmware really executed, in machine time: "
                      f"the simulated laser works {self.sim_speed:g}x faster than a real one, so a job of a "
                      "few seconds holds minutes of laser time.")
        self.say.say(f"The file: {job.about}.")
        self.cli.fabnode("print", str(job.path), "--state-dir", str(self.laser_dir))
        s = watch_job(self.nodes["laser"], self.say, JOB_WAIT_S)
        last = s.get("last_job") or {}
        self.say.say(job_summary(last, job, self.sim_speed))
        self.expect("the engraving completed", last.get("status") == "completed", s)
        self.say.step("Ada taps her badge to leave: the fume extractor runs on for 3 s (the relay stays on), "
                      "then the laser locks.")
        self.cli.fabnode("badge", ADA, "--state-dir", str(self.laser_dir))
        watch_until_locked(self.nodes["laser"], self.say, LOCK_WAIT_S)

    # --- the evening: what the region saw -------------------------------------------------------------

    def reports(self) -> dict[str, Any]:
        """The region's report beside the nodes' own summaries (or, with no broker, the queued outbox)."""
        if self.broker_url is None:
            self.say.step("Without a broker every record waits in its node's outbox (nothing is lost):")
            for node in self.nodes.values():
                self.cli.fabnode("telemetry", "status", "--state-dir", str(node.state_dir))
            figures = self.node_reports()
            return {"ok": True, "broker": None, "nodes": figures}
        self.wait_for_region()
        region = self.region_report()
        figures = self.node_reports()
        return self.agree(region, figures)

    def wait_for_region(self) -> None:
        """Until the region has acknowledged every record of both nodes."""
        self.say.step("Each node sends its records (sessions, jobs, state changes) from its outbox to the "
                      "broker; the collector stores them and acknowledges. Wait until the region has "
                      "acknowledged every record of both nodes:")
        for node in self.nodes.values():
            argv = ("telemetry", "status", "--json", "--state-dir", str(node.state_dir))
            self.cli.fabnode(*argv, quiet=True)

            def acknowledged(args: tuple[str, ...] = argv) -> dict[str, Any] | None:
                stats: dict[str, Any] = json.loads(self.cli.fabnode(*args, quiet=True, show=False).stdout)
                return stats if stats.get("backlog") == 0 else None

            stats = wait_for(f"the region to acknowledge the {node.name}'s records", acknowledged,
                             TELEMETRY_WAIT_S, every_s=0.5, alive=node.check_alive)  # fmt: skip
            self.say.say(f"{node.name}: nothing waiting; the region acknowledged through seq "
                         f"{stats['acked_through']}", indent="     ")  # fmt: skip

    def region_report(self) -> dict[str, Any]:
        """`fabnode region report`, shown, and its --json totals."""
        self.say.step("The region's report: per machine, the sessions and hours in use, jobs, filament, "
                      "laser hours and distinct members, from the telemetry alone.")
        self.cli.run([*FABNODE, "region", "report", "--db", str(self.region_db)])
        done = self.cli.run([*FABNODE, "region", "report", "--json", "--db", str(self.region_db)],
                            quiet=True)  # fmt: skip
        totals: dict[str, Any] = json.loads(done.stdout)["totals"]
        return totals

    def node_reports(self) -> dict[str, dict[str, Any]]:
        """Each node's `usage summary` shown, and its figures from the JSON forms."""
        self.say.step("Each node's own figures, from its own usage log: `fabnode usage summary` totals the "
                      "node's job list (`fabnode usage`) and session list (`fabnode usage sessions`).")
        figures = {}
        for node in self.nodes.values():
            where = ("--state-dir", str(node.state_dir))
            self.cli.fabnode("usage", "summary", "--by", "machine", *where)
            sessions = json.loads(self.cli.fabnode("usage", "sessions", "--format", "json", *where,
                                                   quiet=True).stdout)  # fmt: skip
            jobs = json.loads(self.cli.fabnode("usage", "--format", "json", *where, quiet=True).stdout)
            figures[node.name] = node_figures(sessions, jobs)
        return figures

    def agree(self, region: dict[str, Any], figures: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """The comparison table; DemoError when a figure differs."""
        self.say.step("Side by side: the region's totals against the sum of the nodes' own figures.")
        rows = compare(figures, region)
        self.say.say(render(list(figures), rows))
        wrong = [r.label for r in rows if not r.agree]
        if wrong:
            raise DemoError(f"the region and the nodes disagree on {', '.join(wrong)}")
        self.say.say("They agree: the region saw every session and job the nodes recorded, once.")
        return {"ok": True, "broker": self.broker_url, "region": region, "nodes": figures,
                "comparison": [{"figure": r.label, "nodes": r.nodes, "region": r.region, "agree": r.agree}
                               for r in rows]}  # fmt: skip

    def stop_all(self) -> list[tuple[str, int | None, int | None]]:
        """Stop every service, nodes first (they close their sessions), the broker last."""
        stopped = []
        for service in reversed(self.services):
            pid = service.pid
            stopped.append((service.name, pid, service.stop()))
        return stopped


def job_summary(last: dict[str, Any], job: demo_files.Job, sim_speed: float) -> str:
    """`status --json`'s last_job as a sentence: G-code lines as the node counts them, the job's time in
    real seconds, the laser's in machine seconds (the simulator runs `sim_speed` times faster)."""
    status, reason = last.get("status", "?"), last.get("reason")
    head = f"the job ended {status}" + (f" ({reason})" if reason and reason != status else "")
    lines = f"all {job.gcode_lines:,} G-code lines acknowledged" if status == "completed" else \
        f"stopped after line {last.get('last_line_acked', '?')} of the file"
    took = f"in {float(last.get('running_s') or 0.0):.1f} s (wall clock)"
    laser = f"laser on {last.get('laser_on_s') or 0:.0f} s of machine time (simulated {sim_speed:g}x faster)"
    used = f"{last.get('filament_mm') or 0:.0f} mm of filament" if last.get("filament_mm") else laser
    return f"{head}: {lines} {took}, {used}, cost {last.get('cost') or 0:.2f}"


def _temp(status: dict[str, Any]) -> str:
    reading = (status.get("temperatures") or {}).get("hotend")
    return "?" if not reading else f"{float(reading['actual']):.0f}"

