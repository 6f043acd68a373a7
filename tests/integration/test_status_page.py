"""The status page at `/` in a real headless Chromium (Debian's chromium and chromedriver), over loopback.

Driven with Selenium (the SeleniumHQ bindings, pointed at /usr/bin/chromedriver: nothing is downloaded).
What is asserted is what a member sees: the texts on the page, the progress bar, the problems of a
refused upload, and that a hostile file name stays text. Screenshots go to the test's tmp_path; with
FABNODE_DOCS_SCREENSHOTS=1 the 480x320 and phone ones are also written to docs/ for the README.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from fabnode.web.fake_desk import FakeDesk
from fabnode.web.page import MAX_STREAMS
from fabnode.web.server import WebServer
from tests.conftest import gcode_path
from tests.data.web.prusaslicer import prusaslicer_body
from tests.integration.test_daemon_helpers import MEMBER_UID, Node, gcode_prefix
from tests.integration.test_web_api import ADA_KEY, GRACE_KEY, make_desk, running, web_settings
from tests.integration.test_web_uploads import PROBLEMS

webdriver = pytest.importorskip("selenium.webdriver", reason="no selenium here (pip install -e '.[dev]')")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
REPO = Path(__file__).resolve().parents[2]
HOSTILE = "<img src=x onerror=window.pwned=1>.gcode"
KIOSK, PHONE = (480, 320), (390, 844)
BROWSER_TZ = "Europe/Zurich"  # the browser's zone: the page shows the node's UTC times in it

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)),
                       reason="no chromium and chromedriver here (apt install chromium chromium-driver; "
                              ".ci/run installs them)"),
]


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """One headless Chromium for the module's tests (each test serves the page on its own port)."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-extensions", "--hide-scrollbars",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):  # fmt: skip
        options.add_argument(arg)
    service = Service(CHROMEDRIVER, env={**os.environ, "TZ": BROWSER_TZ})
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def desk(tmp_path: Path) -> FakeDesk:
    return make_desk(tmp_path / "uploads")


def serve(desk: FakeDesk, **settings: Any) -> WebServer:
    web = WebServer(desk, web_settings(**settings))
    web.start()
    return web


@pytest.fixture
def server(desk: FakeDesk) -> Iterator[WebServer]:
    web = serve(desk)
    yield web
    web.stop()


def viewport(driver: WebDriver, size: tuple[int, int], mobile: bool = False) -> None:
    """The page's viewport exactly `size` CSS pixels (what a screenshot captures)."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",  # type: ignore[attr-defined]
                           {"width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": mobile})


def open_page(driver: WebDriver, server: WebServer, size: tuple[int, int] = KIOSK) -> None:
    viewport(driver, size)
    driver.get(server.url + "/")


def until(driver: WebDriver, condition: Callable[[WebDriver], Any], what: str, timeout: float = 15.0) -> Any:
    """Wait for a condition on the page, failing with `what` and the page's text."""
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition)
    except Exception as exc:
        body = driver.find_element(By.TAG_NAME, "body").text
        raise AssertionError(f"not within {timeout} s: {what}; the page shows:\n{body}") from exc


def shown(driver: WebDriver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def shows(element_id: str, text: str) -> Callable[[WebDriver], bool]:
    return lambda d: text in d.find_element(By.ID, element_id).text


def http_get(server: WebServer, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def queue_upload(server: WebServer, desk: FakeDesk, name: str, key: str = ADA_KEY,
                 source: str | None = None) -> None:  # fmt: skip
    """A real upload through the API (so the queue holds a real analysis): `source` from tests/data, or
    the first lines of one."""
    data = (gcode_path(source).read_bytes() if source
            else gcode_prefix(Path(desk.folder).parent, 400, "q.gcode").read_bytes())  # fmt: skip
    body, content_type = prusaslicer_body(data, name)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("POST", "/api/files/local", body, {"X-Api-Key": key, "Content-Type": content_type})
        response = conn.getresponse()
        assert response.status == 201, response.read()
    finally:
        conn.close()


def lab_in_use(desk: FakeDesk) -> None:
    """Ada's uploaded job running at 42.5 %, and a refused tap."""
    running(desk)
    desk.state["job"] = {**desk.state["job"], "file": "/var/lib/fabnode/uploads/3f2a9c01-benchy.gcode",
                         "source": "upload", "uploaded_by": "Ada Lovelace"}  # fmt: skip
    at = datetime.now(UTC).replace(hour=12, minute=2, second=0, microsecond=0)
    desk.state["last_refused"] = {"reason": "training expired on 2026-10-01", "member": "Grace Hopper",
                                  "at": at.strftime("%Y-%m-%dT%H:%M:%SZ")}  # fmt: skip


def lab_clock() -> str:
    """12:02 UTC as the browser shows it in the lab's time zone (BROWSER_TZ)."""
    return datetime.now(UTC).replace(hour=12, minute=2).astimezone(ZoneInfo(BROWSER_TZ)).strftime("%H:%M")


def test_the_page_shows_the_machine_state_and_progress(browser: WebDriver, server: WebServer,
                                                        desk: FakeDesk, tmp_path: Path) -> None:  # fmt: skip
    lab_in_use(desk)
    queue_upload(server, desk, "cubhelix-petg.gcode", key=GRACE_KEY, source="prusaslicer-cubhelix.gcode")
    open_page(browser, server)
    until(browser, shows("job-percent", "42.5 %"), "the job's percent")
    assert shown(browser, "machine") == "prusa-mk4"
    assert shown(browser, "state") == "Running"
    assert shown(browser, "member") == "Ada"
    assert shown(browser, "job-name") == "benchy.gcode"  # as the slicer named it, not the node's folder
    assert "/var/lib" not in browser.find_element(By.TAG_NAME, "body").text
    assert shown(browser, "job-elapsed") == "10 min 00 s" and shown(browser, "job-eta") == "13 min 32 s"
    bar = browser.find_element(By.ID, "job-bar")
    fill = browser.find_element(By.ID, "job-fill")
    assert bar.get_attribute("aria-valuenow") == "42.5"
    # the fill eases to its width (a CSS transition): measure it once it has arrived
    until(browser, lambda _: abs(fill.size["width"] / bar.size["width"] - 0.425) <= 0.02, "the bar's fill")
    assert fill.size["width"] / bar.size["width"] == pytest.approx(0.425, abs=0.02)
    temps = shown(browser, "temp-list")
    assert "hotend 214.8 / 215 °C" in temps and "bed 59.5 / 60 °C" in temps
    until(browser, shows("queue-list", "cubhelix-petg.gcode"), "the upload queue")
    [entry] = browser.find_elements(By.CSS_SELECTOR, "#queue-list li")
    upload = desk.uploads()[0].analysis
    assert entry.text.splitlines() == [
        "cubhelix-petg.gcode",
        f"Grace · {_duration(upload.estimated_s)} · {upload.filament_g:.1f} g · cost {upload.cost:.2f}"]
    refused = shown(browser, "refused")
    assert refused.startswith("Refused: training expired on 2026-10-01 (Grace) ")
    assert refused.endswith(f" {lab_clock()}")  # the node's UTC time in the lab's own
    assert not browser.find_element(By.ID, "pause").get_attribute("disabled")
    # Everything a member needs is above the fold on the 480x320 screen.
    for element_id in ("machine", "state", "member", "job-percent", "job-bar", "job-eta", "temp-list"):
        rect = browser.find_element(By.ID, element_id).rect
        assert rect["y"] + rect["height"] <= KIOSK[1] and rect["x"] + rect["width"] <= KIOSK[0], element_id
    kiosk = tmp_path / "status-page.png"
    assert browser.get_screenshot_as_file(str(kiosk))
    viewport(browser, PHONE, mobile=True)
    until(browser, lambda d: d.execute_script("return innerWidth") == PHONE[0], "the phone's viewport")
    phone = tmp_path / "status-page-phone.png"
    assert browser.get_screenshot_as_file(str(phone))
    assert kiosk.read_bytes()[:8] == phone.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("FABNODE_DOCS_SCREENSHOTS") == "1":
        shutil.copyfile(kiosk, REPO / "docs" / "status-page.png")
        shutil.copyfile(phone, REPO / "docs" / "status-page-phone.png")


def _duration(s: float) -> str:
    """As page.js shows a duration."""
    s = round(s)
    h, m = s // 3600, (s % 3600) // 60
    return f"{h} h {m:02d} min" if h else f"{m} min {s % 60:02d} s" if m else f"{s} s"


def test_the_page_follows_the_node_live(browser: WebDriver, server: WebServer, desk: FakeDesk) -> None:
    open_page(browser, server)
    until(browser, shows("state", "Locked"), "the locked machine")
    assert shown(browser, "member") == "nobody" and shown(browser, "job-name") == "No job"
    assert browser.find_element(By.ID, "pause").get_attribute("disabled")
    lab_in_use(desk)
    until(browser, shows("job-percent", "42.5 %"), "the job, without reloading")
    desk.state.update(state="paused")
    desk.state["job"] = {**desk.state["job"], "percent": 57.0, "pause_reason": "filament runout"}
    until(browser, shows("job-percent", "57.0 %"), "the new percent")
    assert shown(browser, "state") == "Paused" and shown(browser, "pause") == "Resume"
    assert shown(browser, "job-paused") == "Paused: filament runout"
    assert "live" in (browser.find_element(By.ID, "live").get_attribute("class") or "")


def test_pause_and_cancel_need_the_members_key(browser: WebDriver, server: WebServer,
                                               desk: FakeDesk) -> None:  # fmt: skip
    running(desk)
    open_page(browser, server, PHONE)
    until(browser, shows("job-percent", "42.5 %"), "the job")
    browser.find_element(By.ID, "pause").click()
    until(browser, shows("message", "Paste your API key first"), "the page asking for a key")
    assert desk.calls == []
    key = browser.find_element(By.ID, "key")
    key.send_keys(GRACE_KEY + "\n")
    browser.find_element(By.ID, "pause").click()
    until(browser, shows("message", "Refused: job 7 is Ada Lovelace's, not yours"), "Grace refused")
    key.clear()
    key.send_keys(ADA_KEY + "\n")
    browser.find_element(By.ID, "pause").click()
    until(browser, shows("message", "Paused."), "Ada's pause done")
    browser.find_element(By.ID, "cancel").click()  # the first press only arms it
    until(browser, shows("cancel", "Press again to cancel"), "the armed cancel button")
    browser.find_element(By.ID, "cancel").click()
    until(browser, shows("message", "Cancelled."), "Ada's cancel done")
    assert desk.calls == [("pause", 7, "Grace Hopper"), ("pause", 7, "Ada Lovelace"),
                          ("cancel", 7, "Ada Lovelace")]  # fmt: skip
    browser.refresh()  # the key was kept in this browser
    until(browser, lambda d: d.find_element(By.ID, "key").get_attribute("value") == ADA_KEY, "the kept key")


def test_a_failing_upload_shows_each_problem_with_its_line(browser: WebDriver, server: WebServer,
                                                           desk: FakeDesk, tmp_path: Path) -> None:
    bad = tmp_path / "hot.gcode"
    bad.write_bytes(PROBLEMS)
    open_page(browser, server, PHONE)
    until(browser, shows("state", "Locked"), "the page")
    browser.find_element(By.CSS_SELECTOR, "#tools summary").click()
    browser.find_element(By.ID, "key").send_keys(ADA_KEY + "\n")
    browser.find_element(By.ID, "upload-file").send_keys(str(bad))
    browser.find_element(By.ID, "upload-send").click()
    until(browser, shows("upload-result", "problem(s) for this machine"), "the refusal")
    assert shown(browser, "upload-result").startswith("Refused: hot.gcode:")
    # Each problem as the API listed it, with its line.
    status, body = _post(server, bad)
    assert status == 409
    expected = [f"line {p['line']}: {p['message']}" for p in body["problems"]]
    items = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#problems li")]
    assert items == expected and {3, 4} <= {p["line"] for p in body["problems"]}
    assert desk.uploads() == []


def _post(server: WebServer, path: Path) -> tuple[int, Any]:
    body, content_type = prusaslicer_body(path.read_bytes(), path.name)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("POST", "/api/files/local", body, {"X-Api-Key": ADA_KEY, "Content-Type": content_type})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_a_good_upload_from_the_page_joins_the_queue(browser: WebDriver, server: WebServer,
                                                     desk: FakeDesk, tmp_path: Path) -> None:  # fmt: skip
    part = gcode_prefix(tmp_path, 300, "gear.gcode")
    open_page(browser, server, PHONE)
    browser.find_element(By.CSS_SELECTOR, "#tools summary").click()
    browser.find_element(By.ID, "key").send_keys(ADA_KEY + "\n")
    browser.find_element(By.ID, "upload-print").click()
    browser.find_element(By.ID, "upload-file").send_keys(str(part))
    browser.find_element(By.ID, "upload-send").click()
    until(browser, shows("upload-result", "gear.gcode uploaded"), "the upload's answer")
    [queued] = desk.uploads()
    assert (queued.name, queued.owner.name, queued.print_now) == ("gear.gcode", "Ada Lovelace", True)
    assert queued.path.read_bytes() == part.read_bytes()
    until(browser, shows("queue-list", "starts on tap"), "the queue showing it")


@pytest.mark.parametrize(("show", "member", "owner", "refused", "hidden"), [
    ("none", "a member", "a member", "(", ("Ada", "Lovelace", "Grace", "Hopper")),
    ("first-name", "Ada", "Grace", "(Grace)", ("Lovelace", "Hopper")),
    ("full", "Ada Lovelace", "Grace Hopper", "(Grace Hopper)", ()),
])  # fmt: skip
def test_names_appear_only_as_show_member_allows(browser: WebDriver, desk: FakeDesk, show: str, member: str,
                                                 owner: str, refused: str, hidden: tuple[str, ...]) -> None:
    server = serve(desk, show_member=show)
    try:
        lab_in_use(desk)
        queue_upload(server, desk, "bracket.gcode", key=GRACE_KEY)
        open_page(browser, server)
        until(browser, shows("queue-list", "bracket.gcode"), "the queue")
        assert shown(browser, "member") == member
        assert shown(browser, "queue-list").splitlines()[1].startswith(owner + " ·")
        assert (refused in shown(browser, "refused")) is (show != "none")
        # Neither the page nor what it was sent carries more of a name than show_member allows.
        page = browser.page_source
        status, raw = http_get(server, "/status.json")
        assert status == 200
        for name in hidden:
            assert name not in page and name not in raw.decode(), name
    finally:
        server.stop()


def test_a_hostile_file_name_is_shown_as_text(browser: WebDriver, server: WebServer, desk: FakeDesk,
                                              tmp_path: Path) -> None:  # fmt: skip
    queue_upload(server, desk, HOSTILE)
    running(desk)
    desk.state["job"] = {**desk.state["job"], "file": f"/var/lib/fabnode/uploads/{HOSTILE}"}
    desk.state["last_refused"] = {"reason": "<b>not trained</b> on <script>window.pwned=2</script>"}
    open_page(browser, server)
    until(browser, shows("queue-list", HOSTILE), "the hostile name, as text")
    assert shown(browser, "job-name") == HOSTILE
    assert "<script>window.pwned=2</script>" in shown(browser, "refused")
    injected = "main img, #queue-list script, #job-name *, #refused-reason *"
    assert browser.find_elements(By.CSS_SELECTOR, injected) == []
    assert browser.execute_script("return window.pwned === undefined")


def test_live_streams_are_capped_and_a_full_node_is_polled(browser: WebDriver, server: WebServer,
                                                           desk: FakeDesk) -> None:  # fmt: skip
    streams = [_open_stream(server) for _ in range(MAX_STREAMS)]
    try:
        for sock in streams:
            assert _read_until(sock, b"data: ").startswith(b"HTTP/1.1 200")
        status, body = http_get(server, "/events")
        assert status == 503 and b"poll /status.json" in body
        open_page(browser, server)  # its EventSource is refused: it polls
        until(browser, shows("state", "Locked"), "the page, polling")
        running(desk)
        until(browser, shows("job-percent", "42.5 %"), "the job, by polling")
        streams.pop().close()  # a place comes free once the node notices the closed stream
        until(browser, lambda d: _stream_status(server) == 200 or None, "a free stream place", timeout=10)
    finally:
        for sock in streams:
            sock.close()


def _open_stream(server: WebServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
    return sock


def _stream_status(server: WebServer) -> int:
    """The status code /events answers with (the stream, if any, is closed at once)."""
    with _open_stream(server) as sock:
        return int(_read_until(sock, b"\r\n").split()[1])


def _read_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = sock.recv(4096)
        assert chunk, data
        data += chunk
    return data


def test_the_files_are_served_by_the_node_with_no_inline_script(server: WebServer) -> None:
    status, html = http_get(server, "/")
    assert status == 200 and b'<script src="page/page.js"' in html
    assert b"http://" not in html and b"https://" not in html  # no CDN: lab networks are often offline
    for path in ("/page/page.js", "/page/page.css"):
        status, body = http_get(server, path)
        assert status == 200 and b"https://" not in body and b"innerHTML" not in body, path
    status, _ = http_get(server, "/page/../server.py")
    assert status == 404
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", "/")
    csp = conn.getresponse().getheader("Content-Security-Policy") or ""
    conn.close()
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp


# --- against the daemon: `fabnode run --simulate` serves the page --------------------------------------


def page_percent(driver: WebDriver) -> float | None:
    text = shown(driver, "job-percent").removesuffix(" %")
    return float(text) if text else None


def test_the_page_follows_a_simulated_job_of_the_daemon(browser: WebDriver, tmp_path: Path) -> None:
    node = Node(tmp_path / "state", sim_speed=20.0).start()
    try:
        node.add_members("sim-printer")
        made = node.cli("members", "key", "Alice")
        assert made.returncode == 0, made.stderr
        key = made.stdout.strip()
        url = json.loads(node.cli("status", "--json").stdout)["web"]["url"]
        part = gcode_prefix(tmp_path, 4000)
        assert node.tap(MEMBER_UID)["ok"]
        assert node.cli("print", str(part)).returncode == 0
        before = node.wait_status(lambda s: (s["job"] or {}).get("percent", 0) > 0, 30, "the job under way")
        viewport(browser, KIOSK)
        browser.get(url + "/")
        until(browser, shows("state", "Running"), "the running job")
        assert shown(browser, "machine") == before["machine"] and shown(browser, "member") == "Alice"
        assert shown(browser, "job-name") == "part.gcode"
        # While it runs, the page's percent lies between the daemon's before and after it was read.
        until(browser, lambda d: (page_percent(d) or 0) >= before["job"]["percent"], "the page catching up")
        shows_now = page_percent(browser)
        after = node.status()
        assert after["state"] == "running" and shows_now is not None
        assert before["job"]["percent"] <= shows_now <= after["job"]["percent"] < 100
        # Paused from the page with Alice's key: the percent it shows is the one `fabnode status --json` says.
        browser.find_element(By.CSS_SELECTOR, "#tools summary").click()
        browser.find_element(By.ID, "key").send_keys(key + "\n")
        browser.find_element(By.ID, "pause").click()
        until(browser, shows("message", "Paused."), "the pause accepted")
        node.wait_status(lambda s: s["state"] == "paused", 20, "the daemon paused")

        def same_percent(d: WebDriver) -> bool:
            status = json.loads(node.cli("status", "--json").stdout)
            return (shown(d, "state") == "Paused" and status["state"] == "paused"
                    and page_percent(d) == status["job"]["percent"])  # fmt: skip

        until(browser, same_percent, "the page's percent equal to `fabnode status --json`'s", timeout=30)
        browser.get_screenshot_as_file(str(tmp_path / "status-page-daemon.png"))
        browser.find_element(By.ID, "cancel").click()
        browser.find_element(By.ID, "cancel").click()
        until(browser, shows("message", "Cancelled."), "the cancel accepted")
        done = node.wait_status(lambda s: s["last_job"] is not None, 30, "the job's end")
        assert done["last_job"]["status"] == "cancelled"
        until(browser, shows("job-name", "No job"), "the page without the job")
        # A refused tap shows its reason.
        assert node.cli("badge", "04:00:00:99").returncode == 1
        until(browser, shows("refused-reason", "unknown badge"), "the refused tap")
    finally:
        node.stop()


def test_numbers_the_page_cannot_show_are_sent_as_null(server: WebServer, desk: FakeDesk) -> None:
    running(desk)
    desk.state["job"] = {**desk.state["job"], "percent": float("nan"), "eta_s": float("inf"),
                         "elapsed_s": -5.0, "id": True}  # fmt: skip
    desk.state["temperatures"] = {"hotend": {"actual": "hot", "target": 1e9}, "bed": "60"}
    desk.state["session"] = {"member": "Ada Lovelace", "role": "member"}
    status, raw = http_get(server, "/status.json")
    assert status == 200
    view = json.loads(raw)  # strict JSON: no NaN or Infinity
    job = view["job"]
    assert (job["percent"], job["eta_s"], job["elapsed_s"], job["id"]) == (None, None, None, None)
    assert view["temperatures"] == [{"name": "hotend", "actual": None, "target": None}]
    assert "session" not in view and "Lovelace" not in raw.decode()
