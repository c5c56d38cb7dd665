"""The gateway's data plane: every endpoint's pool of replicas, and one request forwarded to one
of them over a kept-alive connection.

Rules (they are what make a redeploy lose nothing):

- A replica gets requests only once it is ``ready`` (it answered its readiness probe and a
  warm-up request); a ``draining`` one gets no new request, finishes what it has, and is stopped
  only when its last request is answered (or after the grace period).
- Clients keep their connections to the gateway, never to a replica, so a redeploy closes no
  client connection.
- A request whose replica fails before answering (the connection reset or closed, the process
  gone) is sent again to another replica, up to ``ATTEMPTS`` in all: inference is a pure
  function of its input. Only when no replica is left does the caller get a 503.
- Canary: ``share`` percent of requests go to the ``canary`` replicas, spread evenly (every
  request adds ``share`` to a counter; at 100 the request is the canary's); a request naming a
  version (``/v2/models/m/versions/3/...``) goes to that version's replicas.
- Among replicas of the chosen role, the one with the fewest requests in flight.

Runs on the control plane's event loop; nothing here blocks or locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

from lakehub.server.serving.base import Replica

ATTEMPTS = 3
CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 60.0  # one prediction
KEY_HEADER = b"X-LakeHub-Replica-Key"
PASSED = (b"content-type", b"inference-header-content-length")


class NoReplica(Exception):
    """No replica can take the request now (503)."""


@dataclass(eq=False)
class Backend:
    replica: Replica
    role: str  # main | canary
    version: int
    ready: bool = False
    draining: bool = False
    inflight: int = 0
    answered: int = 0
    idle: list[Link] = field(default_factory=list)
    drained: asyncio.Event = field(default_factory=asyncio.Event)

    def close_idle(self) -> None:
        while self.idle:
            self.idle.pop().close()


@dataclass
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    version: int


BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class Stats:
    """What the endpoint's callers saw: answers by status, their latency (a cumulative-ready
    histogram over ``BUCKETS``, seconds), requests in the gateway now (its queue)."""

    codes: dict[int, int] = field(default_factory=dict)
    buckets: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0
    waiting: int = 0

    def observe(self, status: int, seconds: float) -> None:
        self.codes[status] = self.codes.get(status, 0) + 1
        self.total += seconds
        i = 0
        while i < len(BUCKETS) and seconds > BUCKETS[i]:
            i += 1
        self.buckets[i] += 1


class Pool:
    def __init__(self) -> None:
        self.backends: list[Backend] = []
        self.share = 0  # percent of requests to the canary
        self._tally = 0
        self.stats = Stats()

    def ready(self, role: str | None = None) -> list[Backend]:
        return [
            b
            for b in self.backends
            if b.ready and not b.draining and (role is None or b.role == role)
        ]

    def pick(self, version: int | None = None) -> Backend | None:
        if version is not None:
            live = [b for b in self.ready() if b.version == version]
        else:
            role = "main"
            if self.share:
                self._tally += self.share
                if self._tally >= 100:
                    self._tally -= 100
                    role = "canary"
            live = self.ready(role) or self.ready()
        if not live:
            return None
        return min(live, key=lambda b: b.inflight)

    def versions(self) -> list[int]:
        return sorted({b.version for b in self.ready()})

    async def forward(
        self,
        method: bytes,
        path: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        version: int | None = None,
    ) -> Answer:
        tried: set[int] = set()
        last = ""
        for _ in range(ATTEMPTS):
            b = self.pick(version)
            if b is None or id(b) in tried:
                others = [x for x in self.ready() if id(x) not in tried]
                if version is not None:
                    others = [x for x in others if x.version == version]
                b = min(others, key=lambda x: x.inflight) if others else None
            if b is None:
                break
            tried.add(id(b))
            b.inflight += 1
            try:
                status, out_headers, out = await _exchange(b, method, path, headers, body)
                b.answered += 1
                return Answer(status, out_headers, out, b.version)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as e:
                last = f"{type(e).__name__}: {e}"
            finally:
                b.inflight -= 1
                if b.draining and b.inflight == 0:
                    b.drained.set()
        raise NoReplica(f"no replica could answer ({last})" if last else "no replica is ready")

    async def drain(self, backends: list[Backend], grace: float) -> None:
        """Stop giving ``backends`` requests; return when their last one was answered (or
        after ``grace`` seconds)."""
        for b in backends:
            b.draining = True
            if b.inflight == 0:
                b.drained.set()
        deadline = time.monotonic() + grace
        for b in backends:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(b.drained.wait(), max(0.0, deadline - time.monotonic()))
            b.close_idle()
        self.backends = [b for b in self.backends if b not in backends]


Reply = tuple[int, list[tuple[bytes, bytes]], bytes, bool]  # status, headers, body, closes


class Link(asyncio.Protocol):
    """One connection to a replica, kept alive: one request at a time, its answer parsed as it
    arrives (a ``Content-Length`` body: the replica never sends another kind)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[Reply] | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None or self.waiter.done():
            return
        lines = bytes(self.buf[:end]).split(b"\r\n")
        try:
            status = int(lines[0].split(b" ", 2)[1])
        except (IndexError, ValueError):
            self.waiter.set_exception(ValueError(f"a replica answered {lines[0][:80]!r}"))
            return
        length, close, headers = 0, False, []
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            k, v = k.strip().lower(), v.strip()
            if k == b"content-length":
                length = int(v)
            elif k == b"connection":
                close = v.lower() == b"close"
            elif k in PASSED:
                headers.append((k, v))
        if len(self.buf) < end + 4 + length:
            return
        body = bytes(self.buf[end + 4 : end + 4 + length])
        del self.buf[: end + 4 + length]
        self.waiter.set_result((status, headers, body, close))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionResetError("the replica closed the connection"))

    async def exchange(self, request: bytes) -> Reply:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        async with asyncio.timeout(READ_TIMEOUT):
            return await self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def _exchange(
    b: Backend, method: bytes, path: bytes, headers: list[tuple[bytes, bytes]], body: bytes
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """One request to one replica, on a kept-alive connection if it has one (a kept one found
    closed is replaced by a new one once: the replica may have closed it while idle)."""
    r = b.replica
    head = [
        method + b" " + path + b" HTTP/1.1",
        b"Host: replica",
        KEY_HEADER + b": " + r.secret.encode(),
        *(k + b": " + v for k, v in headers),
        b"Content-Length: %d" % len(body),
    ]
    request = b"\r\n".join(head) + b"\r\n\r\n" + body
    while True:
        link = b.idle.pop() if b.idle else None
        kept = link is not None
        if link is None or link.lost:
            loop = asyncio.get_running_loop()
            async with asyncio.timeout(CONNECT_TIMEOUT):
                _, link = await loop.create_connection(Link, r.host, r.port)
        try:
            status, out_headers, out, close = await link.exchange(request)
        except OSError:
            link.close()
            if kept and not link.buf:  # a kept connection the replica had closed: once more
                continue
            raise
        except BaseException:
            link.close()
            raise
        break
    if close or b.draining:
        link.close()
    else:
        b.idle.append(link)
    return status, out_headers, out
