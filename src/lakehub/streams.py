"""The SDK's streams: data pushed in through Forward or HTTP, read from the lake.

    import lakehub
    lakehub.streams.create("sensors", tags=["sensor.*"])            # records -> Parquet dataset
    lakehub.streams.create("audio", tags=["mic.*"], kind="raw")      # bytes appended in order
    src = lakehub.streams.add_source("plant1", tags=["sensor.*", "mic.*"])
    src["token"], src["key"]                                         # shown once
    lakehub.streams.records("sensors").to_pandas()                   # a catalogued dataset
    with lakehub.streams.open("audio") as f:                         # seekable, ranged reads
        rate, data = scipy.io.wavfile.read(f)

``open`` lists the stream's objects once (``refresh()`` looks again) and fetches byte ranges
when read, a few blocks cached, so a stream far larger than memory can be read or seeked in.
Reading in order fetches the next blocks ahead, in the background, while the current one is used.
A stream larger than memory is read in pieces (``scipy.io.wavfile.read`` loads it whole):

    with lakehub.streams.open("audio") as f, wave.open(f) as w:
        while frames := w.readframes(1 << 20):
            x = np.frombuffer(frames, "<i2")
"""

from __future__ import annotations

import bisect
import builtins
import io
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from lakehub.client import LakeHubError

if TYPE_CHECKING:
    from lakehub.client import Client
    from lakehub.datasets import Dataset

BLOCK = 8 * 2**20
CACHED_BLOCKS = 4  # blocks held at most, those being fetched ahead included
READ_AHEAD = 2  # blocks fetched ahead while a stream is read in order


def _client(client: Client | None) -> Client:
    from lakehub.client import default

    return default(client)


def create(
    name: str,
    tags: builtins.list[str],
    kind: str = "records",
    *,
    path: str | None = None,
    position: int = 100,
    client: Client | None = None,
) -> dict[str, Any]:
    """A stream in your lake (``path`` may name a space you may write)."""
    body = {"name": name, "kind": kind, "tags": tags, "path": path, "position": position}
    data: dict[str, Any] = _client(client).request("POST", "/api/streams", json=body)
    return data


def get(name: str, client: Client | None = None) -> dict[str, Any]:
    """The stream's description and counters (received, in the lake, lag, errors)."""
    data: dict[str, Any] = _client(client).request("GET", f"/api/streams/{name}")
    return data


def list(client: Client | None = None) -> builtins.list[dict[str, Any]]:  # noqa: A001
    data: builtins.list[dict[str, Any]] = _client(client).request("GET", "/api/streams")
    return data


def delete(name: str, client: Client | None = None) -> None:
    _client(client).request("DELETE", f"/api/streams/{name}")


def add_source(
    name: str,
    tags: builtins.list[str],
    *,
    shared_key: bool = True,
    max_bytes_per_s: int | None = None,
    max_message_bytes: int = 16 * 2**20,
    client: Client | None = None,
) -> dict[str, Any]:
    """Register a sender; the answer carries its token and shared key, shown this once."""
    body = {
        "name": name,
        "tags": tags,
        "shared_key": shared_key,
        "max_bytes_per_s": max_bytes_per_s,
        "max_message_bytes": max_message_bytes,
    }
    data: dict[str, Any] = _client(client).request("POST", "/api/sources", json=body)
    return data


def endpoints(client: Client | None = None) -> dict[str, Any]:
    data: dict[str, Any] = _client(client).request("GET", "/api/ingest")
    return data


def records(name: str, client: Client | None = None) -> Dataset:
    """A records stream as the catalogued dataset it fills."""
    from lakehub import datasets

    return datasets.get(name, client=client)


def open(name: str, client: Client | None = None) -> io.BufferedReader:  # noqa: A001
    """A read-only, seekable file over a raw stream: bytes are fetched when read."""
    c = _client(client)
    info = get(name, c)
    if info["kind"] != "raw":
        raise LakeHubError(400, f"stream {name!r} holds records: use streams.records({name!r})")
    bucket, _, prefix = info["path"][5:].partition("/")
    return io.BufferedReader(
        StreamFile(c.lake.credentials().boto3_client(), bucket, prefix, name), buffer_size=1 << 20
    )


class StreamFile(io.RawIOBase):
    """The concatenation of a stream's objects, in key order, read with ranged GETs."""

    def __init__(self, s3: Any, bucket: str, prefix: str, name: str = "") -> None:
        super().__init__()
        self.s3, self.bucket, self.prefix, self.name = s3, bucket, prefix.rstrip("/") + "/", name
        self.keys: builtins.list[str] = []
        self.starts: builtins.list[int] = []
        self.size = 0
        self.pos = 0
        self._blocks: OrderedDict[tuple[int, int], Future[bytes]] = OrderedDict()
        self._next: tuple[int, int] | None = None  # the block that would continue in order
        self._pool: ThreadPoolExecutor | None = None
        self.refresh()

    def refresh(self) -> None:
        """Look for objects appended since opening."""
        keys, starts, size = [], [], 0
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix
        )
        for page in pages:
            for obj in page.get("Contents", []):
                rest = obj["Key"][len(self.prefix) :]
                if "/" in rest or not rest.startswith("part-") or not obj["Size"]:
                    continue
                keys.append(obj["Key"])
                starts.append(size)
                size += int(obj["Size"])
        self.keys, self.starts, self.size = keys, starts, size
        self._blocks.clear()
        self._next = (0, 0) if keys else None  # reading from the start counts as in order

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence not in (io.SEEK_SET, io.SEEK_CUR, io.SEEK_END):
            raise ValueError(f"invalid whence ({whence})")
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise OSError("negative seek position")
        self.pos = base + offset
        return self.pos

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        self._blocks.clear()
        super().close()

    def _get(self, key: tuple[int, int]) -> bytes:
        i, b = key
        start = b * BLOCK
        resp = self.s3.get_object(
            Bucket=self.bucket, Key=self.keys[i], Range=f"bytes={start}-{start + BLOCK - 1}"
        )
        data: bytes = resp["Body"].read()
        return data

    def _after(self, key: tuple[int, int]) -> tuple[int, int] | None:
        i, b = key
        end = self.starts[i + 1] if i + 1 < len(self.keys) else self.size
        if self.starts[i] + (b + 1) * BLOCK < end:
            return i, b + 1
        return (i + 1, 0) if i + 1 < len(self.keys) else None

    def _fetch(self, key: tuple[int, int], ahead: bool = False) -> None:
        """Start fetching ``key`` (in the background when ``ahead``) unless it is held."""
        if key in self._blocks:
            return
        fut: Future[bytes]
        if ahead:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(READ_AHEAD, thread_name_prefix="stream")
            fut = self._pool.submit(self._get, key)
        else:
            fut = Future()
            try:
                fut.set_result(self._get(key))
            except Exception as err:
                fut.set_exception(err)
        self._blocks[key] = fut
        while len(self._blocks) > CACHED_BLOCKS:
            self._blocks.popitem(last=False)[1].cancel()

    def _block(self, i: int, b: int) -> bytes:
        key = (i, b)
        in_order, self._next = key == self._next, self._after(key)
        self._fetch(key)
        self._blocks.move_to_end(key)
        if in_order:  # read in order: fetch the next blocks meanwhile
            nxt = self._next
            for _ in range(READ_AHEAD):
                if nxt is None:
                    break
                self._fetch(nxt, ahead=True)
                nxt = self._after(nxt)
        fut = self._blocks[key]
        try:
            return fut.result()
        except BaseException:
            self._blocks.pop(key, None)  # asked again, it is fetched again
            raise

    def readinto(self, buf: Any) -> int:
        view = memoryview(buf).cast("B")
        done = 0
        while done < len(view) and self.pos < self.size:
            i = bisect.bisect_right(self.starts, self.pos) - 1
            inner = self.pos - self.starts[i]
            block = memoryview(self._block(i, inner // BLOCK))
            piece = block[inner % BLOCK : inner % BLOCK + len(view) - done]
            if not piece:
                break
            view[done : done + len(piece)] = piece
            done += len(piece)
            self.pos += len(piece)
        return done
