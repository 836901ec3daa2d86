"""A hostile web server on 127.0.0.1: every way a media host misbehaves, one route each.

Two servers: an aiohttp app for behaviours HTTP allows, and a raw socket server for the ones a
well-behaved framework refuses to produce (Content-Length that lies, a server that never answers).
"""

from __future__ import annotations

import io
import socketserver
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web
from PIL import Image

from nft_pipeline.local_server import running_app


def png_bytes(size: int = 8, color=(200, 30, 30, 255)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA", (size, size), color).save(buf, "PNG")
    return buf.getvalue()


def jpeg_bytes(size: int = 64) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (10, 120, 200)).save(buf, "JPEG")
    return buf.getvalue()


PNG = png_bytes()
JPEG = jpeg_bytes()
CHUNK = b"\0" * (1 << 20)


class HostileState:
    """Counts hits per route key and bytes the /huge route managed to send."""

    def __init__(self) -> None:
        self.hits: Counter = Counter()
        self.huge_bytes_sent = 0


def hostile_app(state: HostileState) -> web.Application:
    async def ok_png(request: web.Request) -> web.Response:
        state.hits["ok"] += 1
        return web.Response(body=PNG, content_type="image/png")

    async def wrong_type(request: web.Request) -> web.Response:
        return web.Response(body=JPEG, content_type="image/png")

    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(0, len(PNG), 10):
            await resp.write(PNG[i : i + 10])
        await resp.write_eof()
        return resp

    async def huge(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            for _ in range(2000):  # up to 2 GB if nobody stops reading
                await resp.write(CHUNK)
                state.huge_bytes_sent += len(CHUNK)
        except (ConnectionError, RuntimeError):
            pass
        return resp

    async def huge_declared(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        resp.content_length = 10 * 1024**3
        await resp.prepare(request)
        await resp.write(PNG)
        return resp

    async def storm(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        state.hits[key] += 1
        if state.hits[key] <= int(request.query.get("n", "3")):
            return web.Response(status=429, headers={"Retry-After": request.query.get("after", "1")})
        return web.Response(body=PNG, content_type="image/png")

    async def flap(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        state.hits[key] += 1
        if state.hits[key] % 2 == 1:
            return web.Response(status=500, text="flap")
        return web.Response(body=PNG, content_type="image/png")

    async def status(request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        state.hits[f"status-{code}"] += 1
        return web.Response(status=code, text=f"status {code}")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def html_200(request: web.Request) -> web.Response:
        return web.Response(text="<!DOCTYPE html><html><body>Gateway error</body></html>", content_type="image/png")

    async def truncated(request: web.Request) -> web.Response:
        return web.Response(body=PNG[: len(PNG) // 2], content_type="image/png")

    async def empty(request: web.Request) -> web.Response:
        return web.Response(body=b"", content_type="image/png")

    async def slow(request: web.Request) -> web.Response:
        import asyncio

        await asyncio.sleep(float(request.query.get("s", "30")))
        return web.Response(body=PNG, content_type="image/png")

    async def dead_gateway(request: web.Request) -> web.Response:
        state.hits["dead-gateway"] += 1
        return web.Response(status=502, text="bad gateway")

    async def good_gateway(request: web.Request) -> web.Response:
        state.hits["good-gateway"] += 1
        return web.Response(body=PNG, content_type="image/png")

    app = web.Application()
    app.add_routes(
        [
            web.get("/ok.png", ok_png),
            web.get("/wrong-type.png", wrong_type),
            web.get("/chunked.png", chunked),
            web.get("/huge", huge),
            web.get("/huge-declared", huge_declared),
            web.get("/storm/{key}", storm),
            web.get("/flap/{key}", flap),
            web.get("/status/{code}", status),
            web.get("/redirect", redirect),
            web.get("/loop", loop),
            web.get("/html-200.png", html_200),
            web.get("/truncated.png", truncated),
            web.get("/empty.png", empty),
            web.get("/slow", slow),
            web.get("/dead/ipfs/{tail:.*}", dead_gateway),
            web.get("/good/ipfs/{tail:.*}", good_gateway),
        ]
    )
    return app


class _RawHandler(socketserver.BaseRequestHandler):
    """Speaks just enough HTTP/1.1 to lie about lengths or never answer."""

    stop: threading.Event

    def handle(self) -> None:
        request = self.request.recv(65536).decode("latin-1")
        path = request.split(" ", 2)[1] if " " in request else "/"
        head = "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nConnection: close\r\n"
        if path == "/cl-smaller":
            self.request.sendall(f"{head}Content-Length: {len(PNG) - 40}\r\n\r\n".encode() + PNG)
        elif path == "/cl-larger":
            self.request.sendall(f"{head}Content-Length: {len(PNG) + 1000}\r\n\r\n".encode() + PNG)
        elif path == "/slow-body":
            self.request.sendall(f"{head}Content-Length: {len(PNG)}\r\n\r\n".encode() + PNG[:10])
            self.stop.wait(30)
        else:  # /never: accept, read, say nothing
            self.stop.wait(30)


@contextmanager
def running_hostile_servers() -> Iterator[tuple[str, str, HostileState]]:
    """Yield (aiohttp base URL, raw server base URL, state)."""
    state = HostileState()
    stop = threading.Event()
    handler = type("Handler", (_RawHandler,), {"stop": stop})
    raw = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    raw.daemon_threads = True
    raw_thread = threading.Thread(target=raw.serve_forever, daemon=True)
    raw_thread.start()
    try:
        with running_app(hostile_app(state)) as server:
            yield server.base_url, f"http://127.0.0.1:{raw.server_address[1]}", state
    finally:
        stop.set()
        raw.shutdown()
        raw.server_close()
