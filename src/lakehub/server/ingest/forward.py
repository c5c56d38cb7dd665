"""The Fluentd Forward protocol (v1) over TCP, optionally TLS.

Modes: Message ``[tag, time, record(, option)]``, Forward ``[tag, [[time, record], ...](,
option)]``, PackedForward ``[tag, bin(entries)(, option)]`` and CompressedPackedForward (option
``compressed: gzip``). With option ``chunk`` the chunk is acknowledged (``{"ack": chunk}``) once
it is fsynced in the local log; without it, nothing is acknowledged (as with fluentd).

Authentication: a client with a shared key waits for the server's HELO; a client that speaks
first is taken as one without a key, and its tags must be taken by a source without a shared
key. So the server waits ``HELO_AFTER`` seconds of silence before it sends HELO. The PING's
digest names the source (the one whose shared key matches). The server never decodes records
here: entries are kept as the client's bytes and decoded by the lake writer.

Bad input (truncated or malformed msgpack, wrong types, an oversized message, a bad shared key,
a tag no route takes, a full buffer) closes that connection with a log line and no ack: what
was acknowledged before stays, other connections go on.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import ssl
from collections import deque
from typing import Any

import msgpack

from lakehub.server.ingest.base import Fmt, Refused, Source, Stream, gunzip
from lakehub.server.ingest.intake import Intake

log = logging.getLogger("lakehub.server.ingest.forward")
HELO_AFTER = 0.25
HANDSHAKE_TIMEOUT = 10.0
IDLE_TIMEOUT = 300.0  # a connection silent this long between messages is closed
STALLED_TIMEOUT = 20.0  # a message that gets no byte for this long is dropped with its connection
MAX_UNAUTHENTICATED = 64 * 2**20
MAX_TAGLESS = 1024  # bytes of a message from an unknown sender before its tag must be read
MAX_UNKNOWN = 128  # connections whose sender is not known yet (no handshake, no message)
READ = 256 * 1024
ARRAY = frozenset([*range(0x90, 0xA0), 0xDC, 0xDD])
MAP = frozenset([*range(0x80, 0x90), 0xDE, 0xDF])
BINSTR = frozenset([*range(0xA0, 0xC0), 0xC4, 0xC5, 0xC6, 0xD9, 0xDA, 0xDB])
TIME = frozenset(
    [
        *range(0x00, 0x80),
        0xCA,
        0xCB,
        0xCC,
        0xCD,
        0xCE,
        0xCF,
        0xD0,
        0xD1,
        0xD2,
        0xD3,
        0xD4,
        0xD5,
        0xD6,
        0xD7,
        0xD8,
        0xC7,
        0xC8,
        0xC9,
    ]
)


class Closed(Exception):
    pass


class Connection:
    def __init__(
        self, intake: Intake, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.intake = intake
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.source: Source | None = None  # set by the handshake
        self.unpacker = msgpack.Unpacker(raw=True, max_buffer_size=MAX_UNAUTHENTICATED + READ)
        self.buf = bytearray()
        self.base = 0  # stream offset of buf[0]
        self.start = 0  # stream offset where the message being read began
        self.acks: deque[tuple[asyncio.Future[bool], bytes]] = deque()
        self.ack_ready = asyncio.Event()
        self.streams: dict[str, tuple[Source, Stream]] = {}
        self.generation = intake.generation  # of the registry these routes were read from
        self.routed = False  # a message of this connection was routed

    async def run(self) -> None:
        acker = asyncio.create_task(self._send_acks())
        try:
            first = await self._handshake_or_data()
            if first:
                await self._consume(first)
            while True:
                data = await self._read()
                if not data:
                    if len(self.buf) - (self.start - self.base) > 0:
                        log.warning(
                            "%s: connection closed in the middle of a message; the "
                            "unfinished message was not accepted",
                            self.peer,
                        )
                    break
                await self._consume(data)
        except Refused as err:
            log.warning("%s: refused, closing: %s", self.peer, err)
            self.intake.error(None, str(err))
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError) as err:
            log.info("%s: connection lost: %s", self.peer, err)
        except Exception:  # a bug must not pass silently: close this connection, log why
            log.exception("%s: closing after an unexpected error", self.peer)
        finally:
            self.ack_ready.set()
            self.acks.append((_done(), b""))  # the acker's end mark
            try:
                await asyncio.wait_for(acker, 30)
            except (TimeoutError, ConnectionError):
                acker.cancel()
            self.writer.close()

    async def _read(self) -> bytes:
        """The next bytes; closes a connection idle between messages, stalled in the middle of
        one, or silent before its sender is known."""
        partial = len(self.buf) - (self.start - self.base) > 0
        wait = STALLED_TIMEOUT if partial else IDLE_TIMEOUT if self.known else HANDSHAKE_TIMEOUT
        try:
            return await asyncio.wait_for(self.reader.read(READ), wait)
        except TimeoutError:
            raise Refused(
                f"no data for {wait:.0f} s"
                + (
                    " in the middle of a message; the unfinished message was not accepted"
                    if partial
                    else ""
                )
            ) from None

    @property
    def known(self) -> bool:
        """Whether the sender is known: it authenticated, or a message of it was routed."""
        return self.source is not None or self.routed

    # handshake ---------------------------------------------------------------------------
    async def _handshake_or_data(self) -> bytes:
        if not self.intake.keyed():
            return b""
        try:
            return await asyncio.wait_for(self.reader.read(READ), HELO_AFTER)
        except TimeoutError:
            pass
        nonce, salt = os.urandom(16), b""
        self.writer.write(
            msgpack.packb(["HELO", {"nonce": nonce, "auth": salt, "keepalive": True}])
        )
        u = msgpack.Unpacker(raw=True, max_buffer_size=64 * 1024)
        ping: Any = None
        while ping is None:
            data = await asyncio.wait_for(self.reader.read(4096), HANDSHAKE_TIMEOUT)
            if not data:
                raise Refused("closed during the handshake")
            try:
                u.feed(data)
                ping = next(u, None)
            except (ValueError, msgpack.ExtraData, msgpack.BufferFull) as err:
                raise Refused(f"malformed PING: {err}") from None
        if not (
            isinstance(ping, list)
            and len(ping) >= 4
            and ping[0] == b"PING"
            and all(isinstance(x, bytes) for x in ping[1:4])
        ):
            raise Refused("expected PING after HELO")
        hostname, key_salt, digest = ping[1], ping[2], ping[3]
        try:
            source = self.intake.check_key(hostname, key_salt, nonce, digest)
        except Refused:
            self.writer.write(msgpack.packb(["PONG", False, "shared key mismatch", "", ""]))
            await self.writer.drain()
            raise
        me = socket.gethostname().encode()
        assert source.shared_key is not None
        proof = hashlib.sha512(key_salt + me + nonce + source.shared_key.encode()).hexdigest()
        self.writer.write(msgpack.packb(["PONG", True, "", me, proof]))
        await self.writer.drain()
        self.source = source
        log.info("%s: authenticated as source %s", self.peer, source.name)
        return b""

    # messages ----------------------------------------------------------------------------
    def _limit(self) -> int:
        """The most bytes the message being read may hold: its source's limit; without a
        handshake, that of the keyless source its tag belongs to, read from its first bytes."""
        if self.source is not None:
            return self.source.max_message_bytes
        head = bytes(self.buf[self.start - self.base : self.start - self.base + MAX_TAGLESS])
        u = msgpack.Unpacker(raw=True, max_buffer_size=MAX_TAGLESS)
        u.feed(head)
        try:
            u.read_array_header()
            tag = u.unpack()
        except msgpack.OutOfData:
            if len(head) >= MAX_TAGLESS:
                raise Refused(f"no tag in the first {MAX_TAGLESS} bytes of a message") from None
            return MAX_TAGLESS
        except (ValueError, msgpack.UnpackValueError, msgpack.ExtraData) as err:
            raise Refused(f"malformed message: {err}") from None
        if not isinstance(tag, bytes):
            raise Refused(f"the tag must be a string, not {type(tag).__name__}")
        return self.intake.open_source(tag.decode("utf-8", "replace")).max_message_bytes

    async def _consume(self, data: bytes) -> None:
        self.buf += data
        limit = self.source.max_message_bytes if self.source else MAX_UNAUTHENTICATED
        try:
            self.unpacker.feed(data)
        except msgpack.BufferFull:
            raise Refused(f"message larger than {limit} bytes") from None
        while True:
            # the unpacker resumes a message across reads: where it began is ours to remember
            start = self.start
            try:
                self.unpacker.skip()
            except msgpack.OutOfData:
                pending = len(self.buf) - (start - self.base)
                if pending and self.source is None:
                    limit = self._limit()
                if pending > limit + 1024:
                    raise Refused(f"message larger than {limit} bytes") from None
                break
            except (ValueError, msgpack.UnpackValueError, msgpack.ExtraData) as err:
                raise Refused(f"malformed msgpack: {err}") from None
            end = self.start = self.unpacker.tell()
            msg = bytes(self.buf[start - self.base : end - self.base])
            await self._message(msg)
        consumed = self.start - self.base
        if consumed > 1 << 20 or consumed == len(self.buf):
            del self.buf[:consumed]
            self.base += consumed

    async def _message(self, msg: bytes) -> None:
        u = msgpack.Unpacker(raw=True)
        u.feed(msg)
        try:
            n = u.read_array_header()
            if not 2 <= n <= 4:
                raise Refused(f"a message is an array of 2 to 4 items, not {n}")
            tag = u.unpack()
            if not isinstance(tag, bytes):
                raise Refused(f"the tag must be a string, not {type(tag).__name__}")
            tag_s = tag.decode("utf-8", "replace")
            pos = u.tell()
            kind = msg[pos] if pos < len(msg) else -1
            option: Any = {}
            if kind in ARRAY:  # Forward mode
                u.skip()
                data, fmt, rest = msg[pos : u.tell()], Fmt.MSGPACK_ARRAY, n - 2
            elif kind in BINSTR:  # PackedForward (entries may come as str from old clients)
                data, fmt, rest = u.unpack(), Fmt.MSGPACK_ENTRIES, n - 2
            elif kind in TIME and n >= 3:  # Message mode
                u.skip()
                rpos = u.tell()
                if rpos >= len(msg) or msg[rpos] not in MAP:
                    raise Refused("Message mode needs a map as record")
                u.skip()
                data, fmt, rest = b"\x92" + msg[pos : u.tell()], Fmt.MSGPACK_ENTRIES, n - 3
            else:
                raise Refused("the second item must be entries (array or bin) or an event time")
            if rest == 1:
                option = u.unpack()
            elif rest != 0:
                raise Refused("too many items in the message")
        except (
            ValueError,
            msgpack.UnpackValueError,
            msgpack.ExtraData,
            msgpack.OutOfData,
            IndexError,
        ) as err:
            raise Refused(f"malformed message: {err}") from None
        if not isinstance(option, dict):
            raise Refused("the option must be a map")
        chunk = option.get(b"chunk", b"")
        if not isinstance(chunk, bytes) or len(chunk) > 200:
            raise Refused("the chunk option must be a string of at most 200 bytes")
        source, stream = self._route(tag_s)
        if not isinstance(data, bytes):
            raise Refused("entries must be bytes")
        if option.get(b"compressed") == b"gzip":
            if fmt != Fmt.MSGPACK_ENTRIES:
                raise Refused("only PackedForward entries may be compressed")
            fmt = Fmt.GZIP_ENTRIES
            try:  # inflated within the source's limit, or refused before any ack
                gunzip(data, source.max_message_bytes)
            except ValueError as err:
                raise Refused(f"compressed entries: {err}") from None
        while wait := self.intake.throttle(source, len(data)):  # acks later: TCP backpressure
            await asyncio.sleep(wait)
        try:
            chunk_id = chunk.decode("ascii", "replace")
            fut = self.intake.submit(source, stream, fmt, tag_s, data, chunk_id)
        except Refused as err:
            self.intake.error(stream, str(err))
            raise
        if chunk:
            self.acks.append((fut, chunk))
            self.ack_ready.set()

    def _route(self, tag: str) -> tuple[Source, Stream]:
        self.intake.fresh()  # a deleted source or a revoked grant holds from the next message
        if self.generation != self.intake.generation:
            self.streams.clear()
            self.generation = self.intake.generation
        hit = self.streams.get(tag)
        if hit is not None:
            return hit
        source = self.source or self.intake.open_source(tag)
        stream = self.intake.route(source, tag, read=False)
        self.routed = True
        if len(self.streams) < 1000:
            self.streams[tag] = (source, stream)
        return source, stream

    async def _send_acks(self) -> None:
        while True:
            while not self.acks:
                self.ack_ready.clear()
                await self.ack_ready.wait()
            fut, chunk = self.acks.popleft()
            if not chunk:
                return
            try:
                await fut
            except Exception as err:  # the log could not store it: no ack, the client resends
                log.error("%s: chunk not stored: %s", self.peer, err)
                self.writer.close()
                return
            self.writer.write(msgpack.packb({"ack": chunk.decode("utf-8", "replace")}))
            if not self.acks:
                await self.writer.drain()


def _done() -> asyncio.Future[bool]:
    fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    fut.set_result(True)
    return fut


async def serve(
    intake: Intake, host: str, port: int, tls: ssl.SSLContext | None = None
) -> asyncio.Server:
    unknown: set[Connection] = set()  # connections whose sender is not known yet

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        unknown.difference_update([c for c in unknown if c.known])
        if len(unknown) >= MAX_UNKNOWN:
            log.warning(
                "refused a connection: %d connections have not said who sends", len(unknown)
            )
            writer.close()
            return
        conn = Connection(intake, reader, writer)
        unknown.add(conn)
        try:
            await conn.run()
        finally:
            unknown.discard(conn)

    return await asyncio.start_server(
        handle, host, port, ssl=tls, limit=READ * 4, reuse_address=True
    )
