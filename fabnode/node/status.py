"""What `fabnode status` shows: one JSON object drawn, in the controller thread, from the loop's parts.

The display may read the controller's state; nothing here decides by it.
"""

from __future__ import annotations

from collections.abc import Callable

from fabnode.config.settings import settings_in_force
from fabnode.node.actions import ActionRunner
from fabnode.node.health import PartsHealth
from fabnode.node.ports import JsonObject, StatusHost
from fabnode.node.reload import Reloader
from fabnode.node.technician import TechnicianDesk
from fabnode.node.wiring import sim_relay_on


class StatusView:
    """Builds the status snapshot; called with the controller thread's clock."""

    def __init__(self, loop: StatusHost, actions: ActionRunner, technician: TechnicianDesk,
                 health: PartsHealth, reloader: Reloader,
                 directory: Callable[[], JsonObject] | None = None,
                 web: Callable[[float], JsonObject] | None = None) -> None:  # fmt: skip
        self.d = loop
        self.controller = loop.controller
        self.storage = loop.storage
        self.jobs = loop.jobs
        self.parts = loop.parts
        self.actions = actions
        self.technician = technician
        self.health = health
        self.reloader = reloader
        self.directory = directory  # the lab directory's figures (fabnode.node.directory_sync)
        self.web = web  # `web` and `last_refused` (fabnode.node.web_desk)

    def __call__(self, now: float) -> JsonObject:
        """What `fabnode status` shows."""
        d, c, parts = self.d, self.controller, self.parts
        relay, check_relay = sim_relay_on(self.parts), c.wiring_check[0]
        if relay is None and check_relay is not None:
            relay = check_relay  # a technician's check switched it: the controller did not
        session = c.session
        return {
            "lab": d.config.node.lab,
            "machine": d.config.node.machine,
            "kind": d.config.machine.kind,
            "firmware": d.config.machine.firmware,
            "state": c.state.value,
            "relay": c.relay_on if relay is None else relay,
            "leds": self.actions.leds,
            "technician_check": self.technician.snapshot(now),
            "fault": c.fault,
            "member": session.member.name if session is not None else None,
            "session": None if session is None else {
                "member": session.member.name, "role": session.member.role,
                "maintenance": session.is_maintenance, "started_s_ago": round(now - session.started_at, 1),
                "badge_out_pending": session.badge_out_pending,
            },
            "job": self._job(now),
            "last_job": self.actions.last_job,
            "temperatures": d.temperatures,
            "inputs": {"estop": c.estop_pressed, "lid": c.lid_open},
            "laser_mode_off": d.laser_mode_off,  # GRBL's $32 as it said it when off (jobs are refused)
            "inbox": self._inbox(),
            "port": self.health.port_snapshot(now),
            "reader": self.health.reader_snapshot(now),
            "storage": self.storage.snapshot(),
            "config": self.reloader.snapshot(now),
            "directory": self.directory() if self.directory is not None else None,
            "settings": settings_in_force(d.config),  # every setting in force, defaults included
            "simulated": {"gpio": parts.sim_gpio is not None, "reader": parts.sim_reader is not None,
                          "firmware": parts.simulator is not None},
            "uptime_s": round(now - d.started_at, 1),
            **(self.web(now) if self.web is not None else {"web": None, "last_refused": None}),
        }  # fmt: skip

    def _job(self, now: float) -> JsonObject | None:
        job, running = self.controller.job, self.jobs.current
        if job is None:
            return None
        info: JsonObject = {"id": job.id, "status": job.status, "pause_reason": job.pause_reason,
                            "file": job.file, "source": job.source,
                            "uploaded_by": job.uploaded_by}  # fmt: skip
        if running is not None and running.job_id == job.id:
            info.update(running.progress(now), row=running.row_id)
        return info

    def _inbox(self) -> JsonObject | None:
        inbox = self.d.inbox
        if inbox is None:
            return None
        return {"path": str(inbox.folder), "waiting": [p.name for p in inbox.waiting()]}
