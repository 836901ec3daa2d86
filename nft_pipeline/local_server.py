"""Run an aiohttp application on 127.0.0.1 in a background thread (tests, demo, benchmarks).

Synchronous callers (Dagster runs, pytest, the demo) need a real server to talk to while they
keep their own thread; this runs the app on its own event loop and reports the bound port.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

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
    """Serve `app` until the block exits; port 0 picks a free port."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    started = threading.Event()
    bound: list[int] = []
    failure: list[BaseException] = []

    async def start() -> None:
        await runner.setup()
        site = web.TCPSite(runner, host, port, backlog=1024)
        await site.start()
        bound.append(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        except BaseException as exc:  # reported to the caller's thread below
            failure.append(exc)
            started.set()
            return
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, name=f"aiohttp-{host}:{port}", daemon=True)
    thread.start()
    started.wait()
    if failure:
        raise failure[0]
    try:
        yield RunningServer(host, bound[0])
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
