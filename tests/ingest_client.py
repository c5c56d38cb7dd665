"""A tiny Fluentd Forward client for tests: raw sockets, every mode, the shared-key handshake."""

from __future__ import annotations

import gzip
import hashlib
import os
import socket
import time
from typing import Any

import msgpack


class Forward:
    def __init__(self, port: int, key: str | None = None, hostname: bytes = b"test-client",
                 timeout: float = 10.0) -> None:  # fmt: skip
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.unpacker = msgpack.Unpacker(raw=False)
        self.pong: Any = None
        if key is not None:
            helo = self.read()
            assert helo[0] == "HELO", helo
            nonce = helo[1]["nonce"]
            salt = os.urandom(16)
            digest = hashlib.sha512(salt + hostname + nonce + key.encode()).hexdigest()
            self.send_raw(msgpack.packb(["PING", hostname, salt, digest, "", ""]))
            self.pong = self.read()

    def read(self) -> Any:
        """The next object from the server; raises ConnectionError if it closed."""
        while True:
            try:
                return next(self.unpacker)
            except StopIteration:
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionError("closed by the receiver") from None
                self.unpacker.feed(data)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def closed(self, timeout: float = 5.0) -> bool:
        """True once the receiver closed the connection (within ``timeout``)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
        except ConnectionError:
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()


def entries(records: list[dict[str, Any]], t: float | None = None) -> bytes:
    now = int(t or time.time())
    return b"".join(msgpack.packb([now, r]) for r in records)


def message(tag: str, record: dict[str, Any], chunk: str | None = None) -> bytes:
    opt = [{"chunk": chunk}] if chunk else []
    return msgpack.packb([tag, int(time.time()), record, *opt])


def forward(tag: str, records: list[dict[str, Any]], chunk: str | None = None) -> bytes:
    opt = [{"chunk": chunk}] if chunk else []
    return msgpack.packb([tag, [[int(time.time()), r] for r in records], *opt])


def packed(tag: str, records: list[dict[str, Any]], chunk: str | None = None,
           compressed: bool = False) -> bytes:  # fmt: skip
    data = entries(records)
    opt: dict[str, Any] = {"size": len(records)}
    if chunk:
        opt["chunk"] = chunk
    if compressed:
        data = gzip.compress(data)
        opt["compressed"] = "gzip"
    return msgpack.packb([tag, data, opt], use_bin_type=True)
