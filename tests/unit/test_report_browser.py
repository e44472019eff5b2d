"""The report in a real browser: headless Chromium driven over the DevTools protocol.

Checks that a report loads without console errors or exceptions, makes no
network request, runs no injected script, and that its filter works. The
DevTools client is a minimal WebSocket client over a raw socket (no extra
package); a control page with known faults proves the harness can see them.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from pairscope.report.html import render_report
from tests.report_fixtures import XSS_IMG, XSS_PAYLOAD, XSS_SCRIPT, make_run_dir

CHROMIUM = shutil.which("chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None, reason="headless chromium not found on PATH (apt-get install chromium)"
    ),
]
TIMEOUT = 15.0


class DevTools:
    """A blocking Chrome DevTools Protocol client over one WebSocket (RFC 6455, client side)."""

    def __init__(self, ws_url: str) -> None:
        url = urlparse(ws_url)
        self.sock = socket.create_connection((url.hostname, url.port), timeout=TIMEOUT)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET {url.path} HTTP/1.1\r\nHost: {url.hostname}:{url.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def _exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("DevTools socket closed")
            data += chunk
        return data

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        n = len(payload)
        size = (
            struct.pack("!B", 0x80 | n)
            if n < 126
            else struct.pack("!BH", 0x80 | 126, n)
            if n < 65536
            else struct.pack("!BQ", 0x80 | 127, n)
        )
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(struct.pack("!B", 0x80 | opcode) + size + mask + masked)

    def _message(self) -> dict[str, Any]:
        parts: list[bytes] = []
        while True:
            first, second = self._exact(2)
            n = second & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._exact(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._exact(8))[0]
            payload = self._exact(n)  # servers never mask their frames
            opcode = first & 0x0F
            if opcode == 0x9:
                self._send_frame(0xA, payload)
            elif opcode == 0x8:
                raise ConnectionError("DevTools closed the connection")
            elif opcode in (0x0, 0x1, 0x2):
                parts.append(payload)
                if first & 0x80:
                    return dict(json.loads(b"".join(parts)))

    def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> int:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self._send_frame(0x1, json.dumps(message).encode())
        return self.next_id

    def _handle(self, message: dict[str, Any]) -> None:
        self.events.append(message)
        if message.get("method") == "Page.javascriptDialogOpening":
            # A dialog blocks the page; dismiss it so the test can finish and report it.
            self.send("Page.handleJavaScriptDialog", {"accept": True}, message.get("sessionId"))

    def call(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        wanted = self.send(method, params, session)
        while True:
            message = self._message()
            if message.get("id") == wanted:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))
            if "method" in message:
                self._handle(message)

    def wait_for(self, method: str, timeout: float = TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {method} within {timeout} s")
            message = self._message()
            if "method" in message:
                self._handle(message)

    def drain(self, seconds: float) -> None:
        """Collect events for ``seconds`` (late errors, requests)."""
        self.sock.settimeout(0.1)
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                try:
                    message = self._message()
                except TimeoutError:
                    continue
                if "method" in message:
                    self._handle(message)
        finally:
            self.sock.settimeout(TIMEOUT)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevTools]:
    profile = tmp_path_factory.mktemp("chromium-profile")
    assert CHROMIUM is not None
    proc = subprocess.Popen(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = None
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.is_file() and len(port_file.read_text().splitlines()) >= 2):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"chromium did not start (exit code {proc.poll()})")
            time.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        client = DevTools(f"ws://127.0.0.1:{port}{path}")
        yield client
    finally:
        if client is not None:
            try:
                client.send("Browser.close")
            except OSError:
                pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def load(browser: DevTools, page: Path, shot: Path) -> tuple[str, list[dict[str, Any]]]:
    """Open ``page`` in a fresh tab; return the tab's session id and the events it raised."""
    target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})
    sid = session["sessionId"]
    start = len(browser.events)
    for domain in ("Page", "Runtime", "Log", "Network"):
        browser.call(f"{domain}.enable", session=sid)
    browser.call(
        "Emulation.setDeviceMetricsOverride",
        {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False},
        session=sid,
    )
    browser.call("Page.navigate", {"url": page.resolve().as_uri()}, session=sid)
    browser.wait_for("Page.loadEventFired")
    browser.drain(0.3)
    metrics = browser.call("Page.getLayoutMetrics", session=sid)["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": 1280, "height": min(metrics["height"], 12000), "scale": 1}
    shot_data = browser.call(
        "Page.captureScreenshot",
        {"format": "png", "clip": clip, "captureBeyondViewport": True},
        session=sid,
    )["data"]
    shot.write_bytes(base64.b64decode(shot_data))
    return sid, [e for e in browser.events[start:] if e.get("sessionId") == sid]


def problems(events: list[dict[str, Any]]) -> list[str]:
    """Console errors, exceptions, dialogs and non-local requests among the page's events."""
    found = []
    for e in events:
        method, params = e.get("method"), e.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            found.append(f"console error: {params.get('args')}")
        elif method == "Runtime.exceptionThrown":
            found.append(f"exception: {params.get('exceptionDetails')}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            found.append(f"log error: {params['entry'].get('text')}")
        elif method == "Network.requestWillBeSent":
            url = params.get("request", {}).get("url", "")
            if not url.startswith(("file:", "data:")):
                found.append(f"network request: {url}")
        elif method == "Page.javascriptDialogOpening":
            found.append(f"dialog: {params.get('message')}")
    return found


def evaluate(browser: DevTools, sid: str, expression: str) -> Any:
    result = browser.call(
        "Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=sid
    )
    assert "exceptionDetails" not in result, result
    return result["result"].get("value")


def test_harness_sees_faults(browser: DevTools, tmp_path: Path) -> None:
    """Control: a page with an external image, a script error and an alert is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<img src="http://pairscope.invalid/x.png"><script>alert(1);'
        "console.error('boom'); undefinedFunction();</script>",
        encoding="utf-8",
    )
    _, events = load(browser, bad, tmp_path / "bad.png")
    found = problems(events)
    assert any(p.startswith("network request: http://pairscope.invalid") for p in found)
    assert any(p.startswith("dialog") for p in found)
    assert any(p.startswith("console error") for p in found)
    assert any(p.startswith("exception") for p in found)


def test_evaluate_report_in_browser(browser: DevTools, tmp_path: Path) -> None:
    run = make_run_dir(tmp_path / "run", "evaluate", methods=["blendin", "nudging", "guide"])
    shot = tmp_path / "report.png"
    sid, events = load(browser, render_report(run), shot)
    assert problems(events) == []
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 50_000
    # Every inline figure decoded (img-src data: is allowed by the page's CSP).
    assert evaluate(
        browser, sid, "Array.from(document.images).every(i => i.complete && i.naturalWidth > 100)"
    )
    assert evaluate(browser, sid, "document.images.length") >= 5
    # The filter ran (its hash is in the CSP) and works.
    shown = "document.querySelectorAll('.sample:not([hidden])').length"
    assert evaluate(browser, sid, shown) == 12
    assert evaluate(browser, sid, "document.getElementById('f-count').textContent") == (
        "12 samples shown"
    )
    evaluate(
        browser,
        sid,
        "(() => { const s = document.getElementById('f-disagree');"
        "s.value = 'correct'; s.dispatchEvent(new Event('change')); })()",
    )
    expected = evaluate(
        browser, sid, "document.querySelectorAll('.sample[data-disagree=\"correct\"]').length"
    )
    assert 2 <= expected < 12
    assert evaluate(browser, sid, shown) == expected
    evaluate(
        browser,
        sid,
        "(() => { const s = document.getElementById('f-task');"
        "s.value = 'xstest'; s.dispatchEvent(new Event('change')); })()",
    )
    assert evaluate(
        browser,
        sid,
        "Array.from(document.querySelectorAll('.sample:not([hidden])'))"
        ".every(s => s.dataset.task === 'xstest')",
    )
    assert evaluate(browser, sid, "document.querySelector('.task-samples[data-task=gsm8k]').hidden")
    browser.drain(0.2)
    assert problems([e for e in browser.events if e.get("sessionId") == sid]) == []


def test_xss_payload_is_inert_text(browser: DevTools, tmp_path: Path) -> None:
    run = make_run_dir(
        tmp_path / "run", "probe", payload_text=XSS_PAYLOAD, guide=f"hub:evil/{XSS_IMG}"
    )
    sid, events = load(browser, render_report(run), tmp_path / "xss.png")
    assert problems(events) == []
    text = evaluate(browser, sid, "document.body.innerText")
    assert XSS_SCRIPT in text and XSS_IMG in text
    assert evaluate(browser, sid, "document.querySelectorAll('script').length") == 1
    assert evaluate(browser, sid, "document.querySelectorAll('[onerror]').length") == 0
    assert not evaluate(browser, sid, "Array.from(document.images).some(i => i.src.endsWith('/x'))")
