"""Run an aiohttp application on 127.0.0.1 in a background thread (tests, demo, benchmarks).

Synchronous callers (Dagster runs, pytest, the demo) need a real server to talk to while they
keep their own thread; this runs the app on its own event loop and reports the bound port.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class RunningServer:
    host: str
    port: int

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


@contextmanager
def running_app(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> Iterator[RunningServer]:
    """Serve `app` until the block exits; port 0 picks a free port. Frees the port on exit."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name=f"aiohttp-{host}", daemon=True)
    thread.start()

    def run(coroutine: Awaitable[Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result()

    async def start() -> web.AppRunner:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port, backlog=1024).start()
        return runner

    try:
        runner = run(start())
        try:
            yield RunningServer(host, runner.addresses[0][1])
        finally:
            run(runner.cleanup())
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()
