"""Headless Chromium driven over the DevTools protocol with aiohttp's websocket client, for the
browser tests (the search page, the Dagster UI).

A few DevTools commands are all those tests need, so there is no Playwright or Selenium to install
and pin: Chromium comes from Debian (`apt-get install chromium`, scripts/test-setup.sh), and
without it a browser test is skipped and says so (fails, under CI=true: tests/components.py).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from tests.components import missing_component

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-port=0",  # Chromium picks a free port and writes it to DevToolsActivePort
)
WAIT_SECONDS = 60  # a generous bound for a loaded 2-core machine; never a pass/fail timing


class DevTools:
    """Commands to one page over the DevTools websocket; uncaught page exceptions are collected."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse):
        self.socket = socket
        self.ids = itertools.count(1)
        self.replies: dict[int, asyncio.Future] = {}
        self.exceptions: list[str] = []
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.socket:
            data = json.loads(message.data)
            if "id" in data:
                self.replies.pop(data["id"]).set_result(data)
            elif data.get("method") == "Runtime.exceptionThrown":
                self.exceptions.append(data["params"]["exceptionDetails"]["exception"]["description"])

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self.ids)
        self.replies[message_id] = asyncio.get_running_loop().create_future()
        await self.socket.send_json({"id": message_id, "method": method, "params": params})
        reply = await self.replies[message_id]
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    async def open(self, url: str, viewport: tuple[int, int]) -> None:
        width, height = viewport
        await self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        await self.call("Page.navigate", url=url)

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = WAIT_SECONDS) -> Any:
        """Poll until `expression` is truthy (pages work asynchronously); `TimeoutError` with what the page shows."""
        for _ in range(int(timeout * 10)):
            value = await self.evaluate(expression)
            if value:
                return value
            await asyncio.sleep(0.1)
        text = await self.evaluate("document.body ? document.body.innerText.slice(0, 1500) : ''")
        raise TimeoutError(f"still false after {timeout} s: {expression}\nexceptions: {self.exceptions}\npage text: {text}")

    async def click(self, selector: str) -> None:
        """A real mouse click at the centre of the element (press and release)."""
        box = await self.evaluate(
            f"(() => {{ const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            await self.call("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    async def type_text(self, text: str) -> None:
        await self.call("Input.insertText", text=text)

    async def press_enter(self) -> None:
        key = {"key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13}
        await self.call("Input.dispatchKeyEvent", type="keyDown", text="\r", **key)
        await self.call("Input.dispatchKeyEvent", type="keyUp", **key)

    async def screenshot(self, path: Path) -> bytes:
        png = base64.b64decode((await self.call("Page.captureScreenshot", format="png"))["data"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
        return png


def chromium_binary() -> str:
    """The Chromium on PATH; without one the test skips (fails under CI=true), naming it."""
    binary = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    if binary is None:
        missing_component("Chromium", "the browser tests need it (Debian: apt-get install chromium)")
    return binary


@asynccontextmanager
async def chromium_page(profile: Path) -> AsyncIterator[DevTools]:
    """A blank tab of a headless Chromium with its own profile directory; needs `chromium_binary`."""
    binary = chromium_binary()
    process = await asyncio.create_subprocess_exec(
        binary,
        *FLAGS,
        f"--user-data-dir={profile}",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        for _ in range(WAIT_SECONDS * 10):
            if port_file.exists() and port_file.read_text().strip():
                break
            assert process.returncode is None, f"chromium exited with {process.returncode}"
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
                targets = await response.json()
            page = next(target for target in targets if target["type"] == "page")
            async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as socket:
                devtools = DevTools(socket)
                await devtools.call("Runtime.enable")
                await devtools.call("Page.enable")
                yield devtools
                devtools.reader.cancel()
    finally:
        process.terminate()
        await process.wait()
