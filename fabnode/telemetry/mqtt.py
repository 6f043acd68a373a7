"""Telemetry settings and the paho-mqtt client they make: broker URL, TLS, credentials, last will.

`mqtt://host[:port]` (1883) or `mqtts://host[:port]` (8883, TLS, the broker's certificate checked
against `ca_file` or the system store, host name included). A password comes from a file only the
service can read; a client certificate (`client_cert`, `client_key`) may replace it or go with it.
"""

from __future__ import annotations

import ssl
import stat
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from fabnode import broker_url
from fabnode.broker_url import BrokerAddress
from fabnode.config.settings import Config, TelemetryConfig
from fabnode.envelope import build_envelope, encode_envelope, topic


class TelemetryError(RuntimeError):
    """Telemetry cannot run as configured; the message says what to fix."""


@dataclass(frozen=True, slots=True)
class TelemetrySettings:
    """What the publisher needs: the `[telemetry]` config plus the node's lab and machine."""

    broker_url: str
    lab: str
    machine: str
    prefix: str = "fablab"
    ca_file: Path | None = None
    username: str | None = None
    password_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    in_flight: int = 20
    resend_after_s: float = 300.0
    max_unacked: int = 10_000  # messages allowed ahead of the region's ack (not in the config yet)
    keepalive_s: int = 30
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    keep_acked_s: float = 7 * 86400.0  # acknowledged rows are pruned after this long
    client_id: str | None = None  # default fabnode-<lab>-<machine>
    announce: bool = True  # publish status online and the offline last will (not for `flush`)
    persistent_session: bool = True  # the broker keeps our subscription and queued acks while away

    @classmethod
    def from_config(cls, config: Config, broker_url: str | None = None) -> TelemetrySettings:
        """From the node's config; `broker_url` (e.g. `fabnode run --broker`) overrides its broker."""
        t: TelemetryConfig = config.telemetry
        url = broker_url or t.broker
        if not url:
            raise TelemetryError(f"{config.path}: no [telemetry] broker (or pass --broker mqtt://host)")
        return cls(url, config.node.lab, config.node.machine, t.prefix, t.ca_file, t.username,
                   t.password_file, t.client_cert, t.client_key, t.in_flight, t.resend_after_s)  # fmt: skip

    @property
    def mqtt_client_id(self) -> str:
        """The stable client id (so the broker keeps the session across reconnects)."""
        return self.client_id or f"fabnode-{self.lab}-{self.machine}"


def parse_broker_url(url: str) -> BrokerAddress:
    """`mqtt://host[:port]` or `mqtts://host[:port]`; TelemetryError otherwise."""
    return broker_url.parse_broker_url(url, lambda why: TelemetryError(f"broker URL {why}"))


def read_password(path: Path) -> str:
    """The broker password from its file; refuse a file every user on the Pi can read."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TelemetryError(f"password_file {path}: {exc.strerror or exc}") from None
    if mode & stat.S_IROTH:
        raise TelemetryError(
            f"password_file {path} is readable by every user (mode {stat.filemode(mode)}): "
            f"make it readable by the service only (chmod 600 {path})"
        )
    password = text.strip("\r\n")
    if not password:
        raise TelemetryError(f"password_file {path} is empty")
    return password


def tls_context(settings: TelemetrySettings) -> ssl.SSLContext:
    """Verify the broker (ca_file, else the system store, and its host name); add our certificate."""
    try:
        ctx = ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)
        if settings.client_cert:
            key = str(settings.client_key) if settings.client_key else None
            ctx.load_cert_chain(str(settings.client_cert), key)
    except (OSError, ssl.SSLError) as exc:
        s = settings
        raise TelemetryError(
            f"TLS files (ca_file {s.ca_file}, client_cert {s.client_cert}, client_key {s.client_key}): {exc}"
        ) from None
    return ctx


def status_payload(settings: TelemetrySettings, status: str, now: datetime) -> bytes:
    """The `status` message (online / offline); not a record, so seq is null."""
    env = build_envelope(kind="status", msg_id=uuid.uuid4().hex, lab=settings.lab, machine=settings.machine,
                         seq=None, data={"status": status}, sent_at=now, occurred_at=now)  # fmt: skip
    return encode_envelope(env)


def make_client(settings: TelemetrySettings, now: datetime) -> tuple[mqtt.Client, BrokerAddress]:
    """A configured (not yet connected) client: persistent session, TLS, credentials, last will."""
    address = parse_broker_url(settings.broker_url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=settings.mqtt_client_id,
                         clean_session=not settings.persistent_session, protocol=mqtt.MQTTv311)  # fmt: skip
    if address.tls:
        client.tls_set_context(tls_context(settings))
    elif settings.ca_file or settings.client_cert:
        raise TelemetryError(f"broker {settings.broker_url}: ca_file / client_cert need an mqtts:// URL")
    if settings.username:
        password = read_password(settings.password_file) if settings.password_file else None
        client.username_pw_set(settings.username, password)
    elif settings.password_file:
        raise TelemetryError(f"password_file {settings.password_file} given without a username")
    if settings.announce:
        # The will's time is when this client was made: the region sees the broker's own time too.
        status_topic = topic(settings.prefix, settings.lab, settings.machine, "status")
        client.will_set(status_topic, status_payload(settings, "offline", now), qos=1, retain=True)
    client.reconnect_delay_set(settings.reconnect_min_s, settings.reconnect_max_s)  # type: ignore[arg-type]
    # Our window limits what we hand over; the client's own limits must never drop or hold it.
    client.max_inflight_messages_set(max(settings.in_flight, 20))
    client.max_queued_messages_set(0)
    return client, address


def connect_error_kind(exc: BaseException | None) -> str:
    """`tls` (waiting will not fix it) or `network` (it may come back by itself)."""
    return "tls" if isinstance(exc, ssl.SSLError | ssl.CertificateError) else "network"


def describe_connect_error(exc: BaseException, settings: TelemetrySettings) -> str:
    """A sentence a technician can act on, for an exception raised while connecting."""
    where = settings.broker_url
    if isinstance(exc, ssl.SSLCertVerificationError):
        trust = f"the CA in {settings.ca_file}" if settings.ca_file else "the system's CA store"
        reason = exc.verify_message
        return f"TLS: refusing broker {where}: its certificate is not trusted by {trust} ({reason})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake with {where} failed: {exc.reason or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return f"broker {where} refused the connection (is mosquitto running and listening there?)"
    if isinstance(exc, OSError):
        return f"cannot reach broker {where}: {exc.strerror or exc}"
    return f"broker {where}: {exc}"
