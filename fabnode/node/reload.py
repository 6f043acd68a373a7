"""`SIGHUP`: re-read the config and apply what can change while the node runs, never stopping a job.

- At once: session timeouts (the controller's settings; a running timer uses the new value at its next
  deadline), the checkpoint interval, `min_free_mb`, the machine's limits and materials (the next
  preflight and the next job's rates; a running job keeps the figures it started with), the inbox
  folder, and the telemetry settings (the publisher is restarted; records wait in the outbox).
- After the job: the serial settings (port, baud, protocol options, safe-stop G-code): the port is
  reopened with them once no job runs (at once when none does).
- At the next restart only: the node's identity (lab, machine, state dir), the machine's kind and
  firmware, the GPIO and the badge reader: logged and kept as they are.
A config that does not load (a syntax error, a value out of bounds, an unknown option) is refused:
logged with the file and the key, and the running config is kept whole.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from fabnode.config.settings import Config, ConfigError
from fabnode.machine.state import ControllerSettings
from fabnode.node.inbox import Inbox
from fabnode.node.logsafe import shown
from fabnode.node.ports import JsonObject, ReloadHost

log = logging.getLogger("fabnode.daemon")
Loader = Callable[[], Config]


def controller_settings(config: Config) -> ControllerSettings:
    """The controller's settings from the config (ValueError when they contradict each other)."""
    s = config.session
    return ControllerSettings(
        kind=config.machine.kind,
        idle_timeout_s=s.idle_timeout_s,
        idle_warning_s=s.idle_warning_s,
        cooldown_max_s=s.cooldown_max_s,
        cooldown_hotend_below_c=s.cooldown_hotend_below_c,
        fume_runon_s=s.fume_runon_s,
        host_lost_relay_s=s.host_lost_relay_s,
    )


def _restart_only(old: Config, new: Config) -> list[str]:
    """What changed that only a restart applies."""
    changed = []
    for name in ("lab", "machine", "state_dir"):
        if getattr(old.node, name) != getattr(new.node, name):
            changed.append(f"node.{name}")
    for name in ("kind", "firmware"):
        if getattr(old.machine, name) != getattr(new.machine, name):
            changed.append(f"machine.{name}")
    changed += [name for name in ("gpio", "reader") if getattr(old, name) != getattr(new, name)]
    return changed


def _keep_restart_only(old: Config, new: Config) -> Config:
    """`new` with the parts only a restart applies taken from `old`."""
    node = dataclasses.replace(new.node, lab=old.node.lab, machine=old.node.machine,
                               state_dir=old.node.state_dir)  # fmt: skip
    machine = dataclasses.replace(new.machine, name=old.machine.name, kind=old.machine.kind,
                                  firmware=old.machine.firmware)  # fmt: skip
    return dataclasses.replace(new, node=node, machine=machine, gpio=old.gpio, reader=old.reader)


def _serial_changed(old: Config, new: Config) -> bool:
    return old.serial != new.serial or old.machine.safe_stop_gcode != new.machine.safe_stop_gcode


class Reloader:
    """Applies a re-read config to a running daemon (controller thread only)."""

    def __init__(self, daemon: ReloadHost, loader: Loader | None) -> None:
        self.d = daemon
        self.controller = daemon.controller
        self.storage = daemon.storage
        self.jobs = daemon.jobs
        self.parts = daemon.parts
        self.loader = loader
        self.reloads = 0
        self.refused = 0
        self.last: JsonObject | None = None
        self.after_job: Config | None = None  # serial settings waiting for the job to end
        self.at_restart: list[str] = []

    def reload(self, now: float) -> None:
        """Re-read the config file; apply it, or refuse it whole and keep the running one."""
        if self.loader is None:
            log.warning("config reload asked, but this daemon was started without a config file to re-read")
            return
        old = self.d.config
        try:
            read = self.loader()
            new = _keep_restart_only(old, read)
            settings = controller_settings(new)  # ValueError: e.g. idle_warning_s >= idle_timeout_s
        except (ConfigError, OSError, ValueError) as exc:
            self.refused += 1
            self.last = {"ok": False, "message": f"refused: {exc}", "at": now}
            log.error("config reload refused, the running config is kept: %s", shown(str(exc)))
            return
        self.at_restart = _restart_only(old, read)
        applied = self._apply(old, new, settings)
        self.reloads += 1
        message = f"reloaded {new.path}: " + (", ".join(applied) or "nothing changed")
        if self.at_restart:
            message += f"; at the next restart: {', '.join(self.at_restart)}"
            log.warning("config reload: %s changed: applies at the next restart (kept as is)",
                        ", ".join(self.at_restart))  # fmt: skip
        self.last = {"ok": True, "message": message, "at": now}
        log.info("config %s", shown(message))
        self.apply_after_job(now)

    def _apply(self, old: Config, new: Config, settings: ControllerSettings) -> list[str]:
        d, applied = self.d, []
        if old.session != new.session:
            self.controller.settings = settings
            applied.append("session")
        if old.machine != new.machine or old.materials != new.materials:
            applied.append("machine and materials (next job)")
        if old.node.min_free_mb != new.node.min_free_mb:
            self.storage.min_free_bytes = int(new.node.min_free_mb * 1024 * 1024)
            applied.append("node.min_free_mb")
        self.jobs.configure(new.machine, new.session.checkpoint_every_s)
        if old.inbox != new.inbox:
            d.inbox = Inbox(new.inbox).ensure() if new.inbox is not None else None
            applied.append("inbox")
        serial = _serial_changed(old, new)
        # The port settings in use stay until the job ends; everything else is the new config's.
        d.config = dataclasses.replace(new, serial=old.serial) if serial else new
        if serial:
            self.after_job = new
            applied.append("serial (after the job)")
        if old.telemetry != new.telemetry:
            d.restart_telemetry()
            applied.append("telemetry")
        return applied

    def apply_after_job(self, now: float) -> None:
        """Reopen the port with the new serial settings once no job runs."""
        new = self.after_job
        d = self.d
        if new is None or self.jobs.current is not None or self.controller.job is not None:
            return
        if d.streamer is not None and d.streamer.job_active:
            return
        self.after_job = None
        d.config = dataclasses.replace(d.config, serial=new.serial)  # the machine's safe-stop is new already
        d.reopen_port(now)
        log.info("config: the firmware's port reopened with the new serial settings (%s, %d baud)",
                 self.parts.port, self.parts.baud)  # fmt: skip

    def snapshot(self, now: float) -> JsonObject:
        """What `fabnode status` shows under `config`."""
        last = None
        if self.last is not None:
            last = {"ok": self.last["ok"], "message": self.last["message"],
                    "s_ago": round(now - self.last["at"], 1)}  # fmt: skip
        c = self.controller.settings
        live = {"idle_timeout_s": c.idle_timeout_s, "idle_warning_s": c.idle_warning_s,
                "cooldown_max_s": c.cooldown_max_s, "host_lost_relay_s": c.host_lost_relay_s,
                "checkpoint_every_s": self.d.config.session.checkpoint_every_s,
                "max_hotend_c": self.d.config.machine.max_hotend_c}  # fmt: skip
        return {"path": str(self.d.config.path), "reloads": self.reloads, "refused": self.refused,
                "last_reload": last, "after_job": ["serial"] if self.after_job is not None else [],
                "at_restart": list(self.at_restart), "live": live}  # fmt: skip
