"""A guarded async HTTP client for untrusted NFT URLs, shared by every stage that fetches.

Token metadata and media URLs are written by strangers: they point at dead gateways, private
addresses, endless bodies and rate-limited hosts. One `GuardedHttpClient` (one aiohttp session)
applies the same rules to every request:

- limits: a global cap on requests in flight and a per-host cap (semaphores, so a queued request
  does not burn its timeout while waiting), connect/read/total timeouts;
- retries with exponential backoff and full jitter on timeouts, broken connections, 408, 429 and
  5xx, honouring `Retry-After` (capped); no retry on other 4xx;
- size: a declared Content-Length above the cap is refused unread, and the body is streamed with a
  hard byte cap, so an oversized body is cut, never held whole;
- address safety: only http(s); redirects followed by hand (capped) and every hop checked; names
  resolve through a resolver that refuses private, loopback, link-local and metadata addresses
  unless explicitly allowed (tests and the sample gateway allow 127.0.0.1).

A failure is returned as a `FetchResult` with a status and a reason, never raised.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import ipaddress
import random
import socket
import time
import urllib.parse
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from nft_pipeline.uris import Candidates, DataUri, InvalidUri, resolve_uri

HEAD_BYTES = 1024  # kept from every body for type sniffing
T = TypeVar("T")
TAIL_BYTES = 32  # kept to tell a complete image from a cut one
SPILL_BYTES = 512 * 1024  # bodies up to this stay in memory; larger ones stream to `dest`


def run_event_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on uvloop where available (much cheaper per request)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


class FetchStatus(StrEnum):
    OK = "ok"
    HTTP_ERROR = "http_error"
    TIMEOUT = "timeout"
    TOO_LARGE = "too_large"
    TRUNCATED = "truncated"
    PROTOCOL_ERROR = "protocol_error"
    CONNECTION_ERROR = "connection_error"
    BLOCKED_ADDRESS = "blocked_address"
    TOO_MANY_REDIRECTS = "too_many_redirects"
    INVALID_URI = "invalid_uri"
    DECODE_ERROR = "decode_error"


_RETRYABLE = {FetchStatus.TIMEOUT, FetchStatus.CONNECTION_ERROR, FetchStatus.TRUNCATED}
_RETRYABLE_HTTP = {408, 429}


@dataclass(frozen=True)
class HttpLimits:
    """Every knob of the guarded client in one place (mirrored by the Dagster resource)."""

    max_in_flight: int = 64
    max_per_host: int = 32
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 15.0
    total_timeout_s: float = 60.0
    max_attempts: int = 5
    backoff_base_s: float = 0.25
    backoff_max_s: float = 8.0
    retry_after_max_s: float = 30.0
    max_redirects: int = 3
    allowed_private: tuple[str, ...] = ()  # hosts or networks allowed despite being private
    ipfs_gateways: tuple[str, ...] = ("https://ipfs.io/ipfs/", "https://dweb.link/ipfs/")
    arweave_gateways: tuple[str, ...] = ("https://arweave.net/",)
    user_agent: str = "nft-pipeline/0.1"


def is_loopback_url(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def gateway_limits(gateway_url: str, base: HttpLimits | None = None) -> HttpLimits:
    """Limits for reading through a (sample) gateway: its `/ipfs/` route first among IPFS gateways,
    and, when it runs on loopback, its host (and only it) allowed past the private-address guard."""
    base = base or HttpLimits()
    gateway_url = gateway_url.rstrip("/")
    host = urllib.parse.urlsplit(gateway_url).hostname or ""
    return replace(
        base,
        allowed_private=(host,) if is_loopback_url(gateway_url) else (),
        ipfs_gateways=(f"{gateway_url}/ipfs/", *[g for g in base.ipfs_gateways if g != f"{gateway_url}/ipfs/"]),
    )


@dataclass
class FetchResult:
    """What one fetch produced: `body` for bodies kept in memory, `path` for spilled ones."""

    url: str
    status: FetchStatus
    resolved_url: str | None = None
    http_status: int | None = None
    declared_type: str | None = None
    n_bytes: int = 0
    sha256: str | None = None
    head: bytes = b""
    tail: bytes = b""
    body: bytes | None = None
    path: Path | None = None
    attempts: int = 0
    error: str | None = None
    retry_after_s: float | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.status is FetchStatus.OK


class AddressPolicy:
    """Decides which IP addresses may be contacted: public ones, plus an explicit allow-list."""

    def __init__(self, allowed: Iterable[str]) -> None:
        self.allowed_hosts: set[str] = set()
        self.allowed_networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for item in allowed:
            try:
                self.allowed_networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                self.allowed_hosts.add(item.lower())

    def ip_allowed(self, ip: str) -> bool:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        if any(addr in net for net in self.allowed_networks):
            return True
        return addr.is_global and not addr.is_multicast

    def host_allowed_unresolved(self, host: str) -> bool | None:
        """True/False for IP literals and allow-listed names; None when DNS must decide."""
        if host.lower() in self.allowed_hosts:
            return True
        try:
            return self.ip_allowed(host.strip("[]"))
        except ValueError:
            return None


class BlockedAddress(OSError):
    """Raised by the resolver when a name resolves only to refused addresses."""


class GuardedResolver(AbstractResolver):
    """Resolves names and drops refused addresses, so the checked IP is the one connected to."""

    def __init__(self, policy: AddressPolicy) -> None:
        self.policy = policy
        self.inner = aiohttp.ThreadedResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        if host.lower() in self.policy.allowed_hosts:
            return await self.inner.resolve(host, port, family)
        results = await self.inner.resolve(host, port, family)
        allowed = [r for r in results if self.policy.ip_allowed(r["host"])]
        if not allowed:
            raise BlockedAddress(f"{host} resolves only to private or reserved addresses")
        return allowed

    async def close(self) -> None:
        await self.inner.close()


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or HTTP-date); None if absent/invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class GuardedHttpClient:
    """One aiohttp session with limits, retries, size caps and address checks (see module doc)."""

    def __init__(self, limits: HttpLimits | None = None, rng: random.Random | None = None) -> None:
        self.limits = limits or HttpLimits()
        self.policy = AddressPolicy(self.limits.allowed_private)
        self._rng = rng or random.Random()
        self._in_flight = asyncio.Semaphore(self.limits.max_in_flight)
        self._per_host: dict[str, asyncio.Semaphore] = {}
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> GuardedHttpClient:
        lim = self.limits
        connector = aiohttp.TCPConnector(
            limit=lim.max_in_flight,
            limit_per_host=lim.max_per_host,
            resolver=GuardedResolver(self.policy),
            ttl_dns_cache=300,
        )
        timeout = aiohttp.ClientTimeout(
            total=lim.total_timeout_s, sock_connect=lim.connect_timeout_s, sock_read=lim.read_timeout_s
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            headers={"User-Agent": lim.user_agent},
            auto_decompress=False,  # a gzip bomb must count against the byte cap as sent
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- public API -----------------------------------------------------------------------------

    async def fetch_uri(self, uri: str, max_bytes: int, dest: Path | None = None) -> FetchResult:
        """Fetch any metadata URI (data:, ipfs://, ar://, http(s)), falling back across gateways."""
        try:
            target = resolve_uri(uri, self.limits.ipfs_gateways, self.limits.arweave_gateways, max_bytes)
        except InvalidUri as exc:
            status = FetchStatus.DECODE_ERROR if uri.strip().lower().startswith("data:") else FetchStatus.INVALID_URI
            return FetchResult(url=uri, status=status, error=str(exc))
        if isinstance(target, DataUri):
            return self._from_data_uri(uri, target)
        return await self._fetch_candidates(uri, target, max_bytes, dest)

    async def fetch_url(
        self, url: str, max_bytes: int, dest: Path | None = None, params: dict[str, Any] | None = None
    ) -> FetchResult:
        """Fetch one http(s) URL with retries; a large body spills to `dest` if given (see `_stream_body`)."""
        if params:
            url = f"{url}{'&' if '?' in url else '?'}{urllib.parse.urlencode(params)}"
        result = FetchResult(url=url, status=FetchStatus.CONNECTION_ERROR)
        for attempt in range(1, self.limits.max_attempts + 1):
            result = await self._attempt(url, max_bytes, dest)
            result.attempts = attempt
            if not self._should_retry(result) or attempt == self.limits.max_attempts:
                break
            await asyncio.sleep(self._delay(attempt, result.retry_after_s))
        return result

    # -- internals ------------------------------------------------------------------------------

    async def _fetch_candidates(self, uri: str, target: Candidates, max_bytes: int, dest: Path | None) -> FetchResult:
        """Try each gateway URL in order; on total failure report the best-informed attempt.

        A gateway that answered (say 404) tells more than one that could not be reached, so the
        reported status is the first HTTP answer if there was one; the error lists every gateway.
        """
        failures: list[FetchResult] = []
        for candidate in target.urls:
            result = await self.fetch_url(candidate, max_bytes, dest)
            if result.ok or result.status in (FetchStatus.TOO_LARGE, FetchStatus.BLOCKED_ADDRESS):
                break
            failures.append(result)
        else:
            answered = [f for f in failures if f.http_status is not None]
            result = answered[0] if answered else failures[-1]
            if len(failures) > 1:
                result.error = "; ".join(f"{urllib.parse.urlsplit(f.url).netloc}: {f.error}" for f in failures)
        result.attempts = sum(f.attempts for f in failures) + (0 if result in failures else result.attempts)
        result.url = uri
        return result

    def _from_data_uri(self, uri: str, data: DataUri) -> FetchResult:
        return FetchResult(
            url=uri[:200],
            status=FetchStatus.OK,
            resolved_url="data:",
            declared_type=data.media_type,
            n_bytes=len(data.body),
            sha256=hashlib.sha256(data.body).hexdigest(),
            head=data.body[:HEAD_BYTES],
            tail=data.body[-TAIL_BYTES:],
            body=data.body,
        )

    def _should_retry(self, result: FetchResult) -> bool:
        if result.status in _RETRYABLE:
            return True
        status = result.http_status
        return result.status is FetchStatus.HTTP_ERROR and status is not None and (status in _RETRYABLE_HTTP or status >= 500)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        lim = self.limits
        if retry_after is not None:
            return min(retry_after, lim.retry_after_max_s) + self._rng.uniform(0, lim.backoff_base_s)
        return self._rng.uniform(0, min(lim.backoff_max_s, lim.backoff_base_s * 2 ** (attempt - 1)))

    def _refusal(self, url: str) -> FetchResult | None:
        """Why `url` may not be fetched (not http(s), a refused address), or None if it may."""
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            return FetchResult(url=url, status=FetchStatus.INVALID_URI, error=f"not an http(s) URL: {url[:120]}")
        if self.policy.host_allowed_unresolved(parsed.hostname) is False:
            return FetchResult(
                url=url, status=FetchStatus.BLOCKED_ADDRESS, error=f"refused address {parsed.hostname}"
            )
        return None

    def _host_semaphore(self, url: str) -> asyncio.Semaphore:
        netloc = url.split("://", 1)[-1].split("/", 1)[0]  # cheaper than urlsplit on the hot path
        semaphore = self._per_host.get(netloc)
        if semaphore is None:
            semaphore = self._per_host[netloc] = asyncio.Semaphore(self.limits.max_per_host)
        return semaphore

    async def _attempt(self, url: str, max_bytes: int, dest: Path | None) -> FetchResult:
        assert self._session is not None, "use GuardedHttpClient as an async context manager"
        per_host = self._host_semaphore(url)
        async with self._in_flight, per_host:
            try:
                result = await self._follow(url, max_bytes, dest)
            except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
                result = FetchResult(url=url, status=FetchStatus.TIMEOUT, error=f"timeout ({type(exc).__name__})")
            except aiohttp.ClientPayloadError as exc:
                result = FetchResult(url=url, status=FetchStatus.TRUNCATED, error=f"body cut short: {exc}")
            except aiohttp.ClientResponseError as exc:  # the response is not valid HTTP
                result = FetchResult(url=url, status=FetchStatus.PROTOCOL_ERROR, error=f"invalid HTTP response: {exc.message}"[:300])
            except aiohttp.ClientConnectorError as exc:
                if isinstance(exc.os_error, BlockedAddress) or isinstance(exc.__cause__, BlockedAddress):
                    result = FetchResult(url=url, status=FetchStatus.BLOCKED_ADDRESS, error=str(exc.os_error))
                else:
                    result = FetchResult(url=url, status=FetchStatus.CONNECTION_ERROR, error=str(exc)[:300])
            except (aiohttp.ClientError, OSError, ValueError) as exc:
                result = FetchResult(url=url, status=FetchStatus.CONNECTION_ERROR, error=f"{type(exc).__name__}: {exc}"[:300])
        if not result.ok and dest is not None:
            dest.unlink(missing_ok=True)  # never leave a partial file behind
        return result

    async def _follow(self, url: str, max_bytes: int, dest: Path | None) -> FetchResult:
        assert self._session is not None
        current = url
        for _hop in range(self.limits.max_redirects + 1):
            refused = self._refusal(current)
            if refused is not None:
                refused.url = url
                return refused
            async with self._session.get(current, allow_redirects=False) as resp:
                if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                    current = urllib.parse.urljoin(current, resp.headers["Location"])
                    continue
                return await self._read(url, current, resp, max_bytes, dest)
        return FetchResult(
            url=url,
            status=FetchStatus.TOO_MANY_REDIRECTS,
            resolved_url=current,
            error=f"more than {self.limits.max_redirects} redirects",
        )

    async def _read(
        self, url: str, current: str, resp: aiohttp.ClientResponse, max_bytes: int, dest: Path | None
    ) -> FetchResult:
        result = FetchResult(
            url=url,
            status=FetchStatus.OK,
            resolved_url=current,
            http_status=resp.status,
            declared_type=resp.headers.get("Content-Type"),
        )
        if resp.status >= 400:
            result.status = FetchStatus.HTTP_ERROR
            result.error = f"HTTP {resp.status} {resp.reason or ''}".strip()
            result.retry_after_s = parse_retry_after(resp.headers.get("Retry-After"))
            return result
        declared = resp.content_length
        if declared is not None and declared > max_bytes:
            result.status = FetchStatus.TOO_LARGE
            result.error = f"declared Content-Length {declared} > cap {max_bytes}"
            return replace(result, n_bytes=0)
        return await self._stream_body(result, resp, max_bytes, dest)

    async def _stream_body(
        self, result: FetchResult, resp: aiohttp.ClientResponse, max_bytes: int, dest: Path | None
    ) -> FetchResult:
        """Read the body under the byte cap: in memory, or spilled to `dest` past `SPILL_BYTES`.

        Small bodies (most NFT images) never touch a staging file, which keeps file creation off
        the event loop; large ones are never held whole. `body` or `path` says which happened.
        """
        digest = hashlib.sha256()
        chunks: list[bytes] = []
        head = bytearray()
        tail = b""
        sink = None
        try:
            async for chunk in resp.content.iter_chunked(64 * 1024):
                result.n_bytes += len(chunk)
                if result.n_bytes > max_bytes:
                    result.status = FetchStatus.TOO_LARGE
                    result.error = f"body exceeds cap {max_bytes} bytes (cut at {result.n_bytes})"
                    break
                digest.update(chunk)
                if len(head) < HEAD_BYTES:
                    head += chunk[: HEAD_BYTES - len(head)]
                tail = (tail + chunk)[-TAIL_BYTES:]
                if sink is None and dest is not None and result.n_bytes > SPILL_BYTES:
                    sink = dest.open("wb")
                    sink.writelines(chunks)
                    chunks = []
                if sink is not None:
                    sink.write(chunk)
                else:
                    chunks.append(chunk)
        finally:
            if sink is not None:
                sink.close()
        if not result.ok:
            if dest is not None:
                dest.unlink(missing_ok=True)
            return result
        result.sha256 = digest.hexdigest()
        result.head = bytes(head)
        result.tail = tail
        if sink is None:
            result.body = b"".join(chunks)
        else:
            result.path = dest
        return result
