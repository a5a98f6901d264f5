"""The report in a real headless browser (Debian's chromium, driven over the DevTools protocol): the page loads from
file://, every chart has a size and marks (the controlled world's section included, with its error bars), every
gallery image decodes, the gallery filter works, a full-page screenshot is not blank, and the console stays free of
errors and exceptions.

CI needs: apt-get install -y chromium
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from verl_ext.world.results import write_html_report

CHROMIUM = next(
    (
        shutil.which(n)
        for n in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
        if shutil.which(n)
    ),
    None,
)
# CI sets VISPLAY_REQUIRE_BROWSER=1 after installing Chromium: there a missing browser fails instead of skipping.
REQUIRED = os.environ.get("VISPLAY_REQUIRE_BROWSER") == "1"
pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not REQUIRED, reason="no chromium on PATH; install Debian's: apt-get install -y chromium"
)


def test_browser_is_available():
    assert CHROMIUM is not None, "VISPLAY_REQUIRE_BROWSER=1 but no chromium on PATH (apt-get install -y chromium)"


# Headless on a closed network: no sandbox (root in a container), no GPU, and none of the background traffic.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--remote-debugging-port=0",
    "--window-size=1280,900",
)
TIMEOUT_S = 60.0


class Chromium:
    """A headless chromium of our own (new session, killed by its process group id) with its DevTools port."""

    def __init__(self, profile: Path):
        self.profile = profile
        self.log = profile.parent / "chromium.log"
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None

    def __enter__(self) -> Chromium:
        self.profile.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [CHROMIUM, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            if port_file.is_file() and port_file.read_text().strip():
                self.port = int(port_file.read_text().split()[0])
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.__exit__()
        raise RuntimeError(f"chromium did not start; its log:\n{self.log.read_text(errors='replace')[-2000:]}")

    def __exit__(self, *exc):
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)

    def new_page_ws(self) -> str:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/json/new?about:blank", method="PUT")
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as r:
            return json.loads(r.read())["webSocketDebuggerUrl"]


class CDP:
    """A minimal DevTools-protocol session on one page: commands by id, events collected."""

    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0
        self.events: list[dict] = []
        self.pending: dict[int, asyncio.Future] = {}
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self):
        async for msg in self.ws:
            data = json.loads(msg.data)
            if "id" in data and data["id"] in self.pending:
                self.pending.pop(data["id"]).set_result(data)
            elif "method" in data:
                self.events.append(data)

    async def send(self, method: str, **params) -> dict:
        self.next_id += 1
        future = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = future
        await self.ws.send_str(json.dumps({"id": self.next_id, "method": method, "params": params}))
        reply = await asyncio.wait_for(future, TIMEOUT_S)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    async def wait_event(self, method: str, after: int = 0) -> dict:
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            for event in self.events[after:]:
                if event["method"] == method:
                    return event
            await asyncio.sleep(0.05)
        raise TimeoutError(f"no {method} event within {TIMEOUT_S}s")

    async def evaluate(self, expression: str):
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def errors(self) -> list[str]:
        out = []
        for e in self.events:
            p = e.get("params", {})
            if e["method"] == "Runtime.exceptionThrown":
                details = p["exceptionDetails"]
                out.append(f"exception: {details.get('text')} {_get_description(details)}")
            elif e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(f"console.{p['type']}: {[a.get('value', a.get('description')) for a in p['args']]}")
            elif e["method"] == "Log.entryAdded" and p["entry"].get("level") == "error":
                out.append(f"log: {p['entry'].get('text')} ({p['entry'].get('url', '')})")
        return out


def _get_description(details: dict) -> str:
    return str((details.get("exception") or {}).get("description", ""))[:300]


PAGE_CHECKS = """(() => {
  const charts = [...document.querySelectorAll("svg.chart")].map(s => {
    const box = s.getBoundingClientRect();
    return {name: s.dataset.chart, width: box.width, height: box.height,
            marks: s.querySelectorAll("polyline, rect.bar, circle").length,
            errbars: [...s.querySelectorAll("path.errbar")].filter(p => p.getBBox().height > 0).length};
  });
  const imgs = [...document.querySelectorAll("#gallery-grid img")];
  const cards = [...document.querySelectorAll("#gallery-grid .card")];
  return {charts,
          images: imgs.length,
          decoded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
          cards: cards.length,
          kept: cards.filter(c => c.dataset.status === "kept").length,
          tables: [...document.querySelectorAll("table")].map(t => t.id),
          height: document.documentElement.scrollHeight};
})()"""


async def _drive(ws_url: str, page_url: str, screenshot: Path) -> dict:
    aiohttp = pytest.importorskip("aiohttp", reason="the DevTools client uses aiohttp (a dependency of ray[default])")

    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url, max_msg_size=0) as ws:
        cdp = CDP(ws)
        for domain in ("Runtime", "Log", "Page"):
            await cdp.send(f"{domain}.enable")
        mark = len(cdp.events)
        await cdp.send("Page.navigate", url=page_url)
        await cdp.wait_event("Page.loadEventFired", after=mark)
        checks = await cdp.evaluate(PAGE_CHECKS)
        checks["visible_after_kept_filter"] = await cdp.evaluate(
            'document.querySelector("button[data-show=kept]").click();'
            '[...document.querySelectorAll("#gallery-grid .card")].filter(c => !c.hidden).length'
        )
        await cdp.evaluate('document.querySelector("button[data-show=all]").click(); 0')
        shot = await cdp.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        checks["errors"] = cdp.errors()
        # The listener itself works: a deliberate console error is seen.
        await cdp.evaluate('console.error("probe from the test"); 0')
        await asyncio.sleep(0.3)
        checks["probe_seen"] = any("probe from the test" in e for e in cdp.errors())
        cdp.reader.cancel()
        return checks


def test_report_renders_in_headless_chromium(report_run, world_results, tmp_path):
    page = write_html_report(world_results, report_run, tmp_path / "report.html")
    screenshot = tmp_path / "report.png"
    with Chromium(tmp_path / "profile") as browser:
        checks = asyncio.run(_drive(browser.new_page_ws(), page.resolve().as_uri(), screenshot))

    assert checks["errors"] == [] and checks["probe_seen"], checks["errors"]
    charts = {c["name"]: c for c in checks["charts"]}
    world = ("world-accuracy", "world-questions")
    for name in ("coevolution", "rates", "filter-reasons", "confidence-1", "confidence-2", "curves-reasoner", *world):
        assert charts[name]["width"] > 100 and charts[name]["height"] > 100, charts[name]
        assert charts[name]["marks"] > 0, f"{name} drew nothing"
    assert all(charts[name]["errbars"] > 0 for name in world), "the spread over seeds is not drawn"
    assert {"stage-table", "benchmark-table", "iteration-table", "world-accuracy", "world-loop"} <= set(
        checks["tables"]
    )
    assert checks["images"] > 0 and checks["decoded"] == checks["images"]  # every data-URI image decoded
    assert 0 < checks["kept"] < checks["cards"] and checks["visible_after_kept_filter"] == checks["kept"]

    image = Image.open(io.BytesIO(screenshot.read_bytes())).convert("L")
    assert image.width >= 1000 and image.height >= min(checks["height"], 2000)
    lo, hi = image.getextrema()
    assert hi - lo > 100  # not a blank page
    assert len(set(image.resize((64, 64)).getdata())) > 20
