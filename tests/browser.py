"""A real headless Chromium for the tests (Debian's, installed when missing), driven over the Chrome
DevTools Protocol with the project's own websockets library: navigate, evaluate, screenshot."""

from __future__ import annotations

import base64
import itertools
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson
from websockets.sync.client import ClientConnection, connect

from tests.cluster import http_json, wait_until
from tests.debian import debian_binary


def debian_chromium() -> str:
    return shutil.which("chromium-browser") or debian_binary("chromium", "chromium")


class Browser:
    """One headless Chromium with one page."""

    def __init__(self, tmp: Path, width: int = 1280, height: int = 900) -> None:
        profile = tmp / "chromium-profile"
        self.proc = subprocess.Popen(
            [debian_chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
             f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"],
            stdout=open(tmp / "chromium.log", "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115
        port_file = profile / "DevToolsActivePort"
        wait_until(lambda: port_file.exists() and port_file.read_text().strip(), 60, "Chromium's DevTools port")
        port = int(port_file.read_text().split()[0])
        pages = wait_until(lambda: [t for t in (http_json(f"http://127.0.0.1:{port}/json/list") or [])
                                    if t.get("type") == "page"], 30, "Chromium's first page")
        self.ws: ClientConnection = connect(pages[0]["webSocketDebuggerUrl"], max_size=64 * 2**20).__enter__()
        self._ids = itertools.count(1)
        self.call("Page.enable")
        self.call("Runtime.enable")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        request_id = next(self._ids)
        self.ws.send(orjson.dumps({"id": request_id, "method": method, "params": params}).decode())
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            message = orjson.loads(self.ws.recv(timeout=30))
            if message.get("id") == request_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
        raise TimeoutError(f"{method}: no answer from Chromium")

    def goto(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def js(self, expression: str) -> Any:
        """The value of ``expression`` in the page (JSON-serializable values only)."""
        answer = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in answer:
            raise RuntimeError(f"{expression}: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))
        return path

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
