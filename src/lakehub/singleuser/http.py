"""The HTTP/1.1 server of a replica (:mod:`lakehub.singleuser.serve`): a plain asyncio protocol,
so a replica needs nothing beyond the model's own packages; uvloop when the environment has it.

- Keep-alive, ``Content-Length`` bodies; no chunked requests (the gateway never sends them).
  Bodies are limited to ``MAX_BODY`` (256 MiB; ``LAKEHUB_REPLICA_MAX_BODY`` bytes when set).
- A handler answers a request at once (it returns the :data:`Answer`) or later (it returns
  ``None`` and calls ``reply`` once). Answers go out in the order of the requests on their
  connection, pipelined or not: a later request's answer waits for the earlier ones.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any, cast

Answer = tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]  # status, type, body, headers
Reply = Callable[[Answer], None]
# method, target, headers (lower-case names), body, reply -> the answer, or None for later
Handler = Callable[[bytes, bytes, dict[bytes, bytes], bytes, Reply], Answer | None]

MAX_BODY = int(os.environ.get("LAKEHUB_REPLICA_MAX_BODY") or 256 * 2**20)
MAX_HEAD = 64 * 2**10
JSON = b"application/json"
REASONS = {
    200: b"OK",
    400: b"Bad Request",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    413: b"Payload Too Large",
    500: b"Internal Server Error",
    503: b"Service Unavailable",
}


def json_answer(status: int, doc: Any) -> Answer:
    return status, JSON, json.dumps(doc, separators=(",", ":")).encode(), []


def error(status: int, message: str) -> Answer:
    return json_answer(status, {"error": message})


class _Slot:
    """A request's place in its connection's line of answers."""

    __slots__ = ("answer", "close")

    def __init__(self, close: bool) -> None:
        self.answer: Answer | None = None
        self.close = close


class Connection(asyncio.Protocol):
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.line: deque[_Slot] = deque()  # requests read, not answered yet, in order
        self.last = False  # a request asked to close, or could not be read: read no more

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport instances, though they behave as one
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.last:
            return
        self.buf += data
        while not self.last and self.transport is not None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEAD:
                    self._refuse(413, "request head too large")
                return
            lines = bytes(self.buf[:end]).split(b"\r\n")
            request_line = lines[0].split(b" ")
            if len(request_line) != 3 or not request_line[2].startswith(b"HTTP/1."):
                self._refuse(400, "malformed request line")
                return
            method, target, version = request_line
            headers = {}
            for line in lines[1:]:
                k, _, v = line.partition(b":")
                headers[k.strip().lower()] = v.strip()
            if headers.get(b"transfer-encoding", b"identity").lower() != b"identity":
                self._refuse(400, "chunked bodies are not taken: send Content-Length")
                return
            given = headers.get(b"content-length", b"0")
            if not given.isdigit():
                self._refuse(400, "Content-Length must be a number of bytes")
                return
            length = int(given)
            if length > MAX_BODY:
                limit = f"{MAX_BODY >> 20} MiB" if MAX_BODY >= 2**20 else f"{MAX_BODY} bytes"
                self._refuse(413, f"bodies are limited to {limit}")
                return
            if len(self.buf) < end + 4 + length:
                return
            body = bytes(self.buf[end + 4 : end + 4 + length])
            del self.buf[: end + 4 + length]
            wanted = headers.get(b"connection", b"").lower()
            close = wanted == b"close" or (version == b"HTTP/1.0" and wanted != b"keep-alive")
            slot = _Slot(close)
            self.line.append(slot)
            self.last = close
            answer = self.handler(method, target, headers, body, partial(self._fill, slot))
            if answer is not None:
                self._fill(slot, answer)

    def _refuse(self, status: int, message: str) -> None:
        """Answer a request that cannot be read (after those before it), then close."""
        self.last = True
        self.buf.clear()
        slot = _Slot(close=True)
        self.line.append(slot)
        self._fill(slot, error(status, message))

    def _fill(self, slot: _Slot, answer: Answer) -> None:
        slot.answer = answer
        if self.transport is not None and self.transport.is_closing():  # the client went away
            self.transport = None  # (connection_lost comes later)
        while self.line and self.line[0].answer is not None and self.transport is not None:
            first = self.line.popleft()
            assert first.answer is not None
            self._write(first.answer, first.close)

    def _write(self, answer: Answer, close: bool) -> None:
        status, ctype, body, extra = answer
        head = [
            b"HTTP/1.1 %d %s" % (status, REASONS.get(status, b"Unknown")),
            b"Content-Type: " + ctype,
            b"Content-Length: %d" % len(body),
            b"Connection: close" if close else b"Connection: keep-alive",
            *(k + b": " + v for k, v in extra),
        ]
        assert self.transport is not None
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        if close:
            self.transport.close()
            self.transport = None
            self.line.clear()

    def eof_received(self) -> bool:
        """The client sent all it will: answer what it asked for, then close."""
        self.last = True
        if self.line:
            self.line[-1].close = True
            return True  # keep the transport open to write the answers
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.line.clear()


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    return loop


def run(handler: Handler, host: str, port: int, hello: str) -> None:
    """Serve until SIGTERM; ``hello`` goes to stderr once listening."""
    loop = new_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(
        loop.create_server(lambda: Connection(handler), host, port, backlog=1024)
    )
    print(hello, file=sys.stderr, flush=True)
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    try:
        loop.run_forever()
    finally:
        server.close()
