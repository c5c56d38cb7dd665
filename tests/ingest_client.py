"""Helpers of the ingestion tests: a tiny Forward client (raw sockets, every mode, the
shared-key handshake) and the steps every test takes (a user, a stream and its source)."""

from __future__ import annotations

import gzip
import hashlib
import os
import secrets
import socket
import time
from typing import Any

import msgpack

import lakehub
from conftest import Hub
from lakehub import datasets

API = "/services/lakehub/api"


class Forward:
    """A Forward connection; every one opened is closed after its test (:func:`close_all`)."""

    opened: list[Forward] = []

    def __init__(
        self,
        port: int,
        key: str | None = None,
        hostname: bytes = b"test-client",
        timeout: float = 10.0,
        tls: Any = None,
    ) -> None:
        """``tls``: an ``ssl.SSLContext`` to speak TLS with."""
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        Forward.opened.append(self)
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname="localhost")
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

    @classmethod
    def close_all(cls) -> None:
        while cls.opened:
            cls.opened.pop().close()


def entries(records: list[dict[str, Any]], t: float | None = None) -> bytes:
    now = int(t or time.time())
    return b"".join(msgpack.packb([now, r]) for r in records)


def message(tag: str, record: dict[str, Any], chunk: str | None = None) -> bytes:
    opt = [{"chunk": chunk}] if chunk else []
    return msgpack.packb([tag, int(time.time()), record, *opt])


def forward(tag: str, records: list[dict[str, Any]], chunk: str | None = None) -> bytes:
    opt = [{"chunk": chunk}] if chunk else []
    return msgpack.packb([tag, [[int(time.time()), r] for r in records], *opt])


def packed(
    tag: str, records: list[dict[str, Any]], chunk: str | None = None, compressed: bool = False
) -> bytes:
    data = entries(records)
    opt: dict[str, Any] = {"size": len(records)}
    if chunk:
        opt["chunk"] = chunk
    if compressed:
        data = gzip.compress(data)
        opt["compressed"] = "gzip"
    return msgpack.packb([tag, data, opt], use_bin_type=True)


def port(hub: Hub, name: str = "forward") -> int:
    return int(hub.runtime()["ports"][name])


def user(hub: Hub, prefix: str = "u") -> str:
    name = f"{prefix}{secrets.token_hex(3)}"
    hub.quick_user(name)
    return name


def setup(
    hub: Hub, who: str, stream: str, tags: list[str], kind: str = "records", **source: Any
) -> dict[str, Any]:
    with hub.http(who) as c:
        r = c.post(f"{API}/streams", json={"name": stream, "tags": tags, "kind": kind})
        assert r.status_code == 201, r.text
        r = c.post(f"{API}/sources", json={"name": f"{stream}-src", "tags": tags, **source})
        assert r.status_code == 201, r.text
        out: dict[str, Any] = r.json()
        return out


def moved(hub: Hub, who: str, stream: str, n: int, timeout: float = 60) -> dict[str, Any]:
    with hub.http(who) as c:

        def done() -> dict[str, Any] | None:
            info: dict[str, Any] = c.get(f"{API}/streams/{stream}").json()
            return info if info["moved_records"] >= n else None

        info: dict[str, Any] = hub.wait(done, timeout, f"{n} records of {stream} in the lake")
        return info


def rows(hub: Hub, who: str, name: str) -> Any:
    client = lakehub.connect(hub.url, hub.token(who))
    return datasets.get(name, client=client).to_pandas()


def ingest_log(hub: Hub) -> str:
    return (hub.data_dir / "logs" / "ingest.log").read_text(errors="replace")
