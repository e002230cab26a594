"""Open an HTML report in real headless Chromium and report console errors and images.

Drives the Debian ``chromium`` binary through the Chrome DevTools protocol over a websocket
(dependency: ``websocket-client``; no browser download). Used by the tests to prove a report
opens without errors and shows its figures.

Example
-------
>>> check = check_html_in_browser(Path("out/report.html"), Path("out/report.png"))
>>> check.ok, check.images, check.images_loaded
(True, 5, 5)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radsurv.errors import RadsurvError

log = logging.getLogger(__name__)

CHROMIUM_NAMES: tuple[str, ...] = ("chromium", "chromium-browser", "google-chrome", "chrome")
CHROMIUM_FLAGS: tuple[str, ...] = (
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
)


class BrowserError(RadsurvError):
    """Headless Chromium could not be started or did not load the page."""


@dataclass
class BrowserCheck:
    """What a headless browser saw when it opened a page."""

    console_errors: list[str] = field(default_factory=list)
    images: int = 0
    images_loaded: int = 0
    title: str = ""
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No console errors and every image decoded."""
        return not self.console_errors and self.images == self.images_loaded


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome executable on PATH, or None."""
    env = os.environ.get("RADSURV_CHROMIUM")
    if env and Path(env).exists():
        return env
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def check_html_in_browser(
    html: Path,
    screenshot: Path | None = None,
    *,
    timeout: float = 60.0,
    settle: float = 0.3,
    evaluate: Mapping[str, str] | None = None,
) -> BrowserCheck:
    """Load ``html`` in headless Chromium; collect console errors and count loaded images.

    Parameters
    ----------
    html
        The HTML file to open (as a ``file://`` URL).
    screenshot
        Where to save a full-page PNG screenshot, or None.
    timeout
        Seconds to wait for the browser and the page load.
    settle
        Seconds to wait after the load event for late console messages.
    evaluate
        Name -> JavaScript expression, evaluated in the loaded page; the JSON-serialisable
        results come back in :attr:`BrowserCheck.values` (e.g. whether an element is visible).

    Returns
    -------
    BrowserCheck
        Console errors (JS exceptions, ``console.error``, failed resource loads), the number of
        ``<img>`` elements and how many of them decoded (``naturalWidth > 0``), and the values
        of ``evaluate``.

    Raises
    ------
    BrowserError
        No Chromium on PATH, or it did not start or load the page in time.
    """
    import websocket  # websocket-client

    html = Path(html).resolve()
    if not html.is_file():
        raise BrowserError(f"{html}: no such HTML file to open")
    exe = find_chromium()
    if exe is None:
        raise BrowserError(
            "no Chromium on PATH; install it (Debian: apt-get install -y chromium) "
            "or set RADSURV_CHROMIUM to the executable"
        )
    profile = tempfile.mkdtemp(prefix="radsurv-chromium-")
    cmd = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        ws_url = _wait_for_page_target(Path(profile), proc, timeout)
        ws = websocket.create_connection(ws_url, timeout=timeout, suppress_origin=True)
        try:
            return _drive(ws, html, screenshot, timeout, settle, evaluate or {})
        finally:
            ws.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        _remove_profile(Path(profile))


def _remove_profile(profile: Path, attempts: int = 50) -> None:
    """Delete Chromium's temporary profile. Its helper processes can outlive the browser by a
    moment and still write there ("Directory not empty"), so the removal is retried briefly."""
    import shutil
    import time

    for _ in range(attempts):
        shutil.rmtree(profile, ignore_errors=True)
        if not profile.exists():
            return
        time.sleep(0.1)
    log.debug("could not remove the Chromium profile %s", profile)


def _wait_for_page_target(profile: Path, proc: subprocess.Popen, timeout: float) -> str:
    """Read the DevTools port Chromium writes into its profile; return the page's ws URL."""
    import urllib.request

    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace")[-800:] if proc.stderr else ""
            raise BrowserError(f"chromium exited with code {proc.returncode}: {err}")
        if port_file.exists():
            lines = port_file.read_text().split()
            if lines:
                port = int(lines[0])
                try:
                    url = f"http://127.0.0.1:{port}/json/list"
                    with urllib.request.urlopen(url, timeout=5) as r:
                        targets = json.loads(r.read())
                except OSError:
                    targets = []
                pages = [t for t in targets if t.get("type") == "page"]
                if pages:
                    return pages[0]["webSocketDebuggerUrl"]
        time.sleep(0.1)
    raise BrowserError(f"chromium did not open its DevTools port within {timeout:.0f} s")


def _drive(
    ws: Any,
    html: Path,
    screenshot: Path | None,
    timeout: float,
    settle: float,
    evaluate: Mapping[str, str],
) -> BrowserCheck:
    """Enable the DevTools domains, load the page, collect errors, count images, screenshot."""
    counter = iter(range(1, 1_000_000))
    errors: list[str] = []
    loaded = False

    def handle(msg: dict[str, Any]) -> None:
        nonlocal loaded
        method = msg.get("method")
        params = msg.get("params", {})
        if method == "Runtime.exceptionThrown":
            det = params.get("exceptionDetails", {})
            text = det.get("exception", {}).get("description") or det.get("text", "exception")
            errors.append(f"exception: {text}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            errors.append(f"console.error: {args}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            source, url = entry.get("source", "log"), entry.get("url", "")
            errors.append(f"{source}: {entry.get('text')} {url}".strip())
        elif method == "Page.loadEventFired":
            loaded = True

    def call(method: str, **params: Any) -> dict[str, Any]:
        mid = next(counter)
        ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = json.loads(ws.recv())
            if msg.get("id") == mid:
                if "error" in msg:
                    raise BrowserError(f"DevTools {method} failed: {msg['error']}")
                return msg.get("result", {})
            handle(msg)
        raise BrowserError(f"DevTools {method} got no answer within {timeout:.0f} s")

    for domain in ("Runtime", "Log", "Page"):
        call(f"{domain}.enable")
    call("Page.navigate", url=html.as_uri())
    deadline = time.monotonic() + timeout
    while not loaded:
        if time.monotonic() > deadline:
            raise BrowserError(f"{html}: page did not finish loading within {timeout:.0f} s")
        handle(json.loads(ws.recv()))
    ws.settimeout(settle)
    end = time.monotonic() + settle
    while time.monotonic() < end:
        try:
            handle(json.loads(ws.recv()))
        except Exception:  # websocket timeout: nothing more to read
            break
    ws.settimeout(timeout)
    js = (
        "JSON.stringify({n: document.images.length, "
        "ok: Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length, "
        "title: document.title})"
    )
    res = call("Runtime.evaluate", expression=js, returnByValue=True)
    info = json.loads(res["result"]["value"])
    values = {}
    for name, expression in evaluate.items():
        out = call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in out:
            det = out["exceptionDetails"]
            text = det.get("exception", {}).get("description") or det.get("text", "exception")
            raise BrowserError(f"{html}: evaluating {name!r} failed: {text}")
        values[name] = out["result"].get("value")
    if screenshot is not None:
        import base64

        metrics = call("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        shot = call(
            "Page.captureScreenshot",
            format="png",
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
        )
        Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
        Path(screenshot).write_bytes(base64.b64decode(shot["data"]))
    check = BrowserCheck(
        console_errors=errors,
        images=info["n"],
        images_loaded=info["ok"],
        title=info["title"],
        values=values,
    )
    log.info("browser check %s: %s", html.name, check)
    return check
