"""The region broker config we ship (config/mosquitto-region.conf + .acl) on a real mosquitto: TLS,
per-node users, a node confined to its own topics and its own ack, the collector over mqtts."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from fabnode.envelope import broker_user, node_acl
from fabnode.region.store import RegionStore
from tests.mqtt_broker import free_port, make_password_file, make_tls_files, mosquitto_binary
from tests.region_support import CollectorThread, synthetic_stream, wait_for

pytestmark = pytest.mark.broker
CONFIG = Path(__file__).resolve().parents[2] / "config"
USERS = {"region-collector": "collector-pw", "north.laser-1": "laser-pw", "north.prusa-mini-1": "mini-pw",
         "north-prusa.mini-1": "other-pw"}  # fmt: skip
# A node whose lab and machine, joined with a dash, would be the user of north/prusa-mini-1.
LOOKALIKE = node_acl("fablab", "north-prusa", "mini-1")


@pytest.fixture
def region_broker(tmp_path: Path) -> Iterator[dict[str, Any]]:
    binary = mosquitto_binary()
    if binary is None:
        pytest.skip("no mosquitto binary (apt install mosquitto)")
    tls = make_tls_files(tmp_path / "tls")
    tls_port, plain_port = free_port(), free_port()
    text = (CONFIG / "mosquitto-region.conf").read_text()
    acl = tmp_path / "mosquitto-region.acl"  # the shipped file, with one more node appended as documented
    acl.write_text((CONFIG / "mosquitto-region.acl").read_text() + "\n" + LOOKALIKE)
    for old, new in {
        "/etc/mosquitto/fabnode.passwd": str(make_password_file(tmp_path / "passwd", USERS)),
        "/etc/mosquitto/mosquitto-region.acl": str(acl),
        "/etc/mosquitto/certs/region-ca.crt": str(tls.ca_cert),
        "/etc/mosquitto/certs/broker.crt": str(tls.server_cert),
        "/etc/mosquitto/certs/broker.key": str(tls.server_key),
        "listener 8883": f"listener {tls_port} 127.0.0.1",
        "listener 1883 127.0.0.1": f"listener {plain_port} 127.0.0.1",
        "/var/lib/mosquitto/": f"{tmp_path}/",
        "log_dest syslog": f"log_dest file {tmp_path / 'mosquitto.log'}",
    }.items():
        assert old in text, old
        text = text.replace(old, new)
    if os.geteuid() == 0:
        text = "user root\n" + text
    (tmp_path / "mosquitto.conf").write_text(text)
    proc = subprocess.Popen([binary, "-c", str(tmp_path / "mosquitto.conf")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for(lambda: _port_open(tls_port) or proc.poll() is not None, 10, "mosquitto to listen")
        assert proc.poll() is None, (tmp_path / "mosquitto.log").read_text()
        yield {"tls_port": tls_port, "plain_port": plain_port, "ca": tls.ca_cert}
    finally:
        proc.terminate()
        proc.wait(10)


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


class Node:
    """A node's MQTT client as the node connects: TLS, its own user."""

    def __init__(self, broker: dict[str, Any], user: str, password: str) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"fabnode-{user}")
        self.client.tls_set(ca_certs=str(broker["ca"]), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self.client.username_pw_set(user, password)
        self.granted: list[int] = []
        self.messages: list[tuple[str, bytes]] = []
        self.event = threading.Event()
        self.client.on_subscribe = lambda _c, _u, _m, codes, _p: (self.granted.extend(c.value for c in codes),
                                                                  self.event.set())  # fmt: skip
        self.client.on_message = lambda _c, _u, m: self.messages.append((m.topic, bytes(m.payload)))
        connected = threading.Event()
        self.client.on_connect = lambda *_a: connected.set()
        self.client.connect("127.0.0.1", broker["tls_port"])
        self.client.loop_start()
        assert connected.wait(5), f"{user} could not connect"

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def subscribe(self, topic: str) -> int:
        self.event.clear()
        self.client.subscribe(topic, qos=1)
        assert self.event.wait(5)
        return self.granted[-1]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.timeout(30)
def test_a_node_writes_only_its_own_topics_and_reads_only_its_own_ack(
    region_broker: dict[str, Any], tmp_path: Path
) -> None:
    db = str(tmp_path / "region.db")
    url = f"mqtts://127.0.0.1:{region_broker['tls_port']}"
    collector = CollectorThread(
        db, url, group="region", client_id="region-collector-1", username="region-collector",
        password=USERS["region-collector"], ca_file=region_broker["ca"],
    ).start()  # fmt: skip
    laser = Node(region_broker, "north.laser-1", USERS["north.laser-1"])
    mini = Node(region_broker, "north.prusa-mini-1", USERS["north.prusa-mini-1"])
    try:
        own = synthetic_stream("north", "laser-1", 2)
        forged = synthetic_stream("north", "prusa-mini-1", 1)[0]  # a valid envelope, on another node's topic
        laser.publish(*own[0])
        laser.publish(*own[1])
        # mosquitto 2.0 drops the forged message and the connection of the node that sent it.
        laser.client.publish(*forged, qos=1)
        mini.publish(*synthetic_stream("north", "prusa-mini-1", 1)[0])  # the real one, from its own user
        with RegionStore.open(db) as store:
            wait_for(lambda: store.count("messages") >= 3, 10, "the nodes' own records")
            rows = store.query("SELECT machine, count(*) FROM messages GROUP BY machine ORDER BY machine")
            assert rows == [("laser-1", 2), ("prusa-mini-1", 1)]  # the forged one never reached us
        # mosquitto grants any subscription and filters on delivery: the other node's retained ack (which
        # exists) never arrives, its own does; retained messages come in subscription order.
        wait_for(laser.client.is_connected, 10, "the node to reconnect")
        laser.subscribe("fablab/region/v1/north/prusa-mini-1/ack")
        laser.subscribe("fablab/region/v1/north/laser-1/ack")
        wait_for(lambda: any(json.loads(p)["seq"] == 2 for _t, p in laser.messages), 5, "the ack of seq 2")
        assert {t for t, _ in laser.messages} == {"fablab/region/v1/north/laser-1/ack"}
        mini.subscribe("fablab/region/v1/north/prusa-mini-1/ack")
        wait_for(lambda: mini.messages, 5, "the other node's own ack")
    finally:
        laser.close()
        mini.close()
        collector.stop()


@pytest.mark.timeout(30)
def test_a_wrong_password_is_refused(region_broker: dict[str, Any]) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=uuid.uuid4().hex)
    client.tls_set(ca_certs=str(region_broker["ca"]), tls_version=ssl.PROTOCOL_TLS_CLIENT)
    client.username_pw_set("north.laser-1", "wrong")
    codes: list[Any] = []
    client.on_connect = lambda _c, _u, _f, rc, _p: codes.append(rc)
    client.connect("127.0.0.1", region_broker["tls_port"])
    client.loop_start()
    try:
        wait_for(lambda: codes, 5, "the CONNACK")
        assert codes[0].is_failure
    finally:
        client.loop_stop()


def test_broker_user_names_of_two_nodes_never_collide() -> None:
    assert broker_user("north", "prusa-mini-1") != broker_user("north-prusa", "mini-1")
    assert (broker_user("north", "prusa-mini-1"), broker_user("north-prusa", "mini-1")) == (
        "north.prusa-mini-1", "north-prusa.mini-1")  # fmt: skip
    shipped = (CONFIG / "mosquitto-region.acl").read_text()
    for lab, machine in (("north", "prusa-mini-1"), ("north", "laser-1")):
        assert node_acl("fablab", lab, machine) in shipped  # the file's example blocks are the generator's
    readme = (CONFIG / "README-region.md").read_text()
    assert 'user="$lab.$machine"' in readme and "<lab>-<machine>" not in readme


@pytest.mark.timeout(30)
def test_a_node_whose_names_join_to_another_nodes_cannot_write_its_topics(
    region_broker: dict[str, Any], tmp_path: Path
) -> None:
    db = str(tmp_path / "region.db")
    url = f"mqtts://127.0.0.1:{region_broker['tls_port']}"
    collector = CollectorThread(
        db, url, client_id="region-collector-1", username="region-collector",
        password=USERS["region-collector"], ca_file=region_broker["ca"],
    ).start()  # fmt: skip
    lookalike = Node(region_broker, "north-prusa.mini-1", USERS["north-prusa.mini-1"])
    try:
        dropped = threading.Event()
        lookalike.client.on_disconnect = lambda *_a: dropped.set()
        lookalike.client.publish(*synthetic_stream("north", "prusa-mini-1", 1)[0], qos=1)  # dropped
        assert dropped.wait(5), "the broker kept the connection of a node writing another node's topic"
        wait_for(lookalike.client.is_connected, 10, "the node to reconnect")
        lookalike.publish(*synthetic_stream("north-prusa", "mini-1", 1)[0])  # its own, stored
        with RegionStore.open(db) as store:
            wait_for(lambda: store.count("messages") >= 1, 10, "the node's own record")
            assert store.query("SELECT lab, machine FROM messages") == [("north-prusa", "mini-1")]
    finally:
        lookalike.close()
        collector.stop()
