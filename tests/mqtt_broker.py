"""A real mosquitto for tests: SHARED by the node's telemetry tests and the region's collector tests.
Keep this API stable; add, never rename.

    broker = MosquittoBroker(tmp_path, persistence=True)
    broker.start()            # free port, temp config, waits until it answers an MQTT CONNECT
    broker.kill()             # SIGKILL: what it had PUBACKed but not yet saved is lost
    broker.start()            # again, same port (and same persistence file)
    broker.stop()             # SIGTERM: saves persistence

`make_tls_files` makes a throw-away CA, a server certificate and client certificates with the
`openssl` command (the `cryptography` package is not in the venv).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from fabnode.mosquitto import connack_probe, free_port, mosquitto_binary


@dataclass(frozen=True)
class TlsFiles:
    """A test CA and a server certificate signed by it (PEM files)."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path


@dataclass(frozen=True)
class TlsListener:
    """The broker's TLS options; `require_certificate` asks clients for a certificate from `cafile`."""

    cafile: Path
    certfile: Path
    keyfile: Path
    require_certificate: bool = False
    use_identity_as_username: bool = False


class BrokerError(RuntimeError):
    """mosquitto did not start or stop as asked; the message holds the end of its log."""


class MosquittoBroker:
    """One mosquitto process on 127.0.0.1 with its config, log and persistence in `workdir`."""

    host = "127.0.0.1"

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        persistence: bool = False,
        autosave_interval: int | None = None,
        max_queued_messages: int | None = None,
        max_inflight_messages: int | None = None,
        tls: TlsListener | None = None,
        password_file: Path | None = None,
        acl_file: Path | None = None,
        allow_anonymous: bool | None = None,
        extra_config: str = "",
        binary: str | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.persistence = persistence
        self.autosave_interval = autosave_interval
        self.max_queued_messages = max_queued_messages
        self.max_inflight_messages = max_inflight_messages
        self.tls = tls
        self.password_file = password_file
        self.acl_file = acl_file
        self.allow_anonymous = password_file is None if allow_anonymous is None else allow_anonymous
        self.extra_config = extra_config
        self.binary = binary or mosquitto_binary()
        self.config_path = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """`mqtt://127.0.0.1:<port>` (or `mqtts://` with TLS) as fabnode's config takes it."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The process id, while it runs."""
        return self._proc.pid if self.running and self._proc else None

    def config_text(self) -> str:
        """The mosquitto.conf this broker runs with."""
        lines = [f"listener {self.port} {self.host}", f"allow_anonymous {str(self.allow_anonymous).lower()}",
                 f"persistence {str(self.persistence).lower()}", f"log_dest file {self.log_path}",
                 "log_type error", "log_type warning", "log_type notice", "log_type information",
                 "connection_messages true", "log_timestamp_format %H:%M:%S"]  # fmt: skip
        if os.geteuid() == 0:
            lines.append("user root")  # else mosquitto drops to a user that cannot write workdir
        if self.persistence:
            lines.append(f"persistence_location {self.workdir}/")
        if self.autosave_interval is not None:
            lines.append(f"autosave_interval {self.autosave_interval}")
        if self.max_queued_messages is not None:
            lines.append(f"max_queued_messages {self.max_queued_messages}")
        if self.max_inflight_messages is not None:
            lines.append(f"max_inflight_messages {self.max_inflight_messages}")
        if self.tls:
            lines += [f"cafile {self.tls.cafile}", f"certfile {self.tls.certfile}",
                      f"keyfile {self.tls.keyfile}",
                      f"require_certificate {str(self.tls.require_certificate).lower()}",
                      f"use_identity_as_username {str(self.tls.use_identity_as_username).lower()}",
                      ]  # fmt: skip
        if self.password_file:
            lines.append(f"password_file {self.password_file}")
        if self.acl_file:
            lines.append(f"acl_file {self.acl_file}")
        return "\n".join(lines) + "\n" + self.extra_config + "\n"

    def start(self, timeout: float = 10.0) -> MosquittoBroker:
        """Write the config, start mosquitto and wait until it answers; same port every time."""
        if self.binary is None:
            raise BrokerError("no mosquitto binary (apt install mosquitto)")
        if self.running:
            return self
        self.config_path.write_text(self.config_text())
        out = (self.workdir / "mosquitto.out").open("ab")
        self._proc = subprocess.Popen([self.binary, "-c", str(self.config_path)], stdout=out, stderr=out)
        out.close()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until the broker answers an MQTT CONNECT with a CONNACK (any return code)."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise BrokerError(f"mosquitto exited with {self._proc.returncode}:\n{self.log_tail()}")
            try:
                self._probe(min(1.0, max(0.05, deadline - time.monotonic())))
                return
            except OSError as exc:
                last = exc
                time.sleep(0.02)  # nothing to wait on: the port is not open yet
        raise BrokerError(
            f"mosquitto on port {self.port} not ready after {timeout}s ({last}):\n{self.log_tail()}"
        )

    def _probe(self, timeout: float) -> None:
        sock: socket.socket = socket.create_connection((self.host, self.port), timeout=timeout)
        try:
            if self.tls:
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                sock = ctx.wrap_socket(sock)
            connack_probe(sock)
        except (ssl.SSLError, ConnectionError) as exc:
            if self.tls and self.tls.require_certificate:
                return  # the TLS handshake reached the broker's client-certificate check: it is up
            raise ConnectionError(str(exc)) from exc
        finally:
            sock.close()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait: mosquitto saves its persistence file on the way out."""
        self._end(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL: nothing saved since the last autosave survives."""
        self._end(signal.SIGKILL, 10.0)

    def _end(self, sig: signal.Signals, timeout: float) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(sig)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
                raise BrokerError(f"mosquitto ignored {sig.name} for {timeout}s") from None
        self._proc = None

    def log_tail(self, lines: int = 30) -> str:
        """The end of the broker's log (for failure messages)."""
        parts = []
        for path in (self.log_path, self.workdir / "mosquitto.out"):
            if path.exists():
                parts += path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(parts)

    def __enter__(self) -> MosquittoBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(BrokerError):
            self.stop()


def make_password_file(path: Path, users: dict[str, str]) -> Path:
    """A mosquitto password file for these users (hashed by mosquitto_passwd)."""
    path.write_text("")
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    for user, password in users.items():
        subprocess.run([tool, "-b", str(path), user, password], check=True, capture_output=True)
    path.chmod(0o600)
    return path


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BrokerError(f"openssl {' '.join(args)} failed:\n{proc.stderr}")


def make_ca(folder: Path, name: str = "Test CA") -> tuple[Path, Path]:
    """A self-signed CA (EC P-256, 1 day); return (cert, key)."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = name.lower().replace(" ", "-")
    cert, key = folder / f"{stem}.crt", folder / f"{stem}.key"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             cwd=folder)  # fmt: skip
    return cert, key


def make_cert(
    folder: Path, ca: tuple[Path, Path], common_name: str, *, server: bool, hosts: tuple[str, ...] = ()
) -> tuple[Path, Path]:
    """A certificate signed by `ca` (a server's for these names / IPs, else a client's): (cert, key)."""
    stem = common_name.lower().replace(" ", "-")
    cert, key, csr, ext = (folder / f"{stem}{s}" for s in (".crt", ".key", ".csr", ".ext"))
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key),
             "-out", str(csr), "-subj", f"/CN={common_name}", cwd=folder)  # fmt: skip
    if server:
        names = [f"IP:{h}" if h.replace(".", "").isdigit() else f"DNS:{h}" for h in hosts]
        ext.write_text(f"subjectAltName={','.join(names)}\nextendedKeyUsage=serverAuth\n")
    else:
        ext.write_text("extendedKeyUsage=clientAuth\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-CAcreateserial",
             "-out", str(cert), "-days", "2", "-sha256", "-extfile", str(ext), cwd=folder)  # fmt: skip
    key.chmod(0o600)
    return cert, key


def make_tls_files(folder: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> TlsFiles:
    """A test CA and a server certificate for `hosts`, signed by it."""
    ca = make_ca(folder)
    server = make_cert(folder, ca, "broker", server=True, hosts=hosts)
    return TlsFiles(ca[0], ca[1], server[0], server[1])
