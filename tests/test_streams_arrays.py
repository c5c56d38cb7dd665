"""Reading what was ingested: raw streams as seekable files, out-of-core Zarr arrays in the lake."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import httpx
import numpy as np
import pytest
from scipy.io import wavfile

import lakehub
from conftest import Hub
from ingest_client import moved, port, setup, user
from lakehub import arrays, streams


@pytest.fixture
def ih(ingest_hub: Hub) -> Hub:
    return ingest_hub


def push_raw(hub: Hub, token: str, tag: str, data: bytes, pieces: int) -> None:
    step = -(-len(data) // pieces)
    with httpx.Client(timeout=30) as c:
        for i in range(0, len(data), step):
            r = c.post(
                f"http://127.0.0.1:{port(hub, 'ingest_http')}/{tag}",
                content=data[i : i + step],
                headers={"Authorization": f"Bearer {token}"},
            )
            assert r.status_code == 200, r.text


def test_a_wav_stream_reads_with_scipy_through_ranged_gets(ih: Hub) -> None:
    a = user(ih, "wv")
    tok = setup(ih, a, "audio", ["mic.*"], kind="raw")["token"]
    rate = 16000
    signal = (np.sin(np.arange(rate * 30) * 0.05) * 20000).astype(np.int16)  # 30 s, ~1 MB
    buf = io.BytesIO()
    wavfile.write(buf, rate, signal)
    push_raw(ih, tok, "mic.kitchen", buf.getvalue(), pieces=7)  # split anywhere, even mid-header
    moved(ih, a, "audio", 7)
    client = lakehub.connect(ih.url, ih.token(a))
    with streams.open("audio", client=client) as f:
        got_rate, got = wavfile.read(f, mmap=False)
        assert got_rate == rate and np.array_equal(got, signal)
        raw = f.raw
        assert len(raw._blocks) <= streams.CACHED_BLOCKS  # a bounded cache, never the whole
        f.seek(-4, io.SEEK_END)
        assert f.read() == signal[-2:].tobytes()
    with pytest.raises(lakehub.client.LakeHubError):
        streams.open("audio", client=lakehub.connect(ih.url, ih.token(user(ih, "other"))))


def test_a_raw_stream_reads_alike_in_order_and_at_random_across_objects(
    ih: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blocks of 1,000 bytes (the real ones are 8 MiB) over objects of odd sizes, an empty one
    among them: reading on in order fetches ahead, jumping about does not; both give the
    stream's bytes, and closing stops the fetching."""
    monkeypatch.setattr(streams, "BLOCK", 1000)
    a = user(ih, "rr")
    client = lakehub.connect(ih.url, ih.token(a))
    name = f"pieces{a}"  # stream names are the hub's, and other modules share this hub
    streams.create(name, tags=[f"{name}.*"], kind="raw", client=client)
    bucket, _, prefix = streams.get(name, client)["path"][5:].partition("/")
    s3 = client.lake.credentials().boto3_client()
    rng = np.random.default_rng(3)
    data = rng.integers(0, 256, 20_000, dtype=np.uint8).tobytes()
    cuts = [0, 1, 999, 1000, 1001, 4321, 4321, 9000, 17_777, 20_000]
    for i, (start, end) in enumerate(zip(cuts, cuts[1:], strict=False)):
        s3.put_object(Bucket=bucket, Key=f"{prefix}/part-{i:04d}.bin", Body=data[start:end])
    s3.put_object(Bucket=bucket, Key=f"{prefix}/_rejected/part-0001.bin", Body=b"not ours")
    with streams.open(name, client=client) as f:
        raw = f.raw
        assert raw.size == len(data) and len(raw.keys) == len(cuts) - 2  # the empty one skipped
        assert f.read(5000) == data[:5000] and f.read() == data[5000:]
        assert raw._pool is not None  # read in order: blocks were fetched ahead
        assert len(raw._blocks) <= streams.CACHED_BLOCKS
        for _ in range(300):
            pos, n = int(rng.integers(0, 21_000)), int(rng.integers(0, 3000))
            f.seek(pos)
            assert f.read(n) == data[pos : pos + n]
            assert len(raw._blocks) <= streams.CACHED_BLOCKS
        f.seek(-3, io.SEEK_END)
        assert f.read(10) == data[-3:]
        with pytest.raises(ValueError):
            raw.seek(0, 7)
    assert raw.closed and raw._pool is None and not raw._blocks


def test_arrays_append_slice_and_reduce_with_dask(ih: Hub) -> None:
    a = user(ih, "ar")
    client = lakehub.connect(ih.url, ih.token(a))
    arr = arrays.create("vib", shape=(0, 3), dtype="float32", chunks=(1000, 3), client=client)
    rng = np.random.default_rng(1)
    blocks = [rng.standard_normal((2500, 3)).astype("float32") for _ in range(2)]
    for b in blocks:
        arr.append(b)
    whole = np.concatenate(blocks)
    again = arrays.open("vib", client=client)
    assert again.shape == (5000, 3) and again.dtype == np.float32
    (codec,) = again.zarr.compressors  # numbers: Blosc LZ4 with byte shuffling
    assert (codec.cname.value, codec.shuffle.value, codec.typesize) == ("lz4", "shuffle", 4)
    assert np.array_equal(again[2400:2600], whole[2400:2600])
    assert np.allclose(again.to_dask().sum(axis=0).compute(), whole.sum(axis=0), rtol=1e-4)
    with pytest.raises(ValueError):
        again.append(np.zeros((3, 4)))
    # B cannot open A's array
    with pytest.raises(lakehub.client.LakeHubError):
        arrays.open("vib", client=lakehub.connect(ih.url, ih.token(user(ih, "nb"))))


def test_an_array_fills_from_a_raw_stream(ih: Hub) -> None:
    a = user(ih, "fs")
    tok = setup(ih, a, "frames", ["frames.*"], kind="raw")["token"]
    frames = np.arange(30000, dtype=np.int16).reshape(-1, 2)
    push_raw(ih, tok, "frames.x", b"HDR!" + frames.tobytes(), pieces=5)
    moved(ih, a, "frames", 5)
    client = lakehub.connect(ih.url, ih.token(a))
    arr = arrays.from_stream(
        "frames",
        "framesarr",
        "int16",
        (2,),
        skip=4,
        client=client,
        rows_per_chunk=4096,
        block_bytes=10_000,
    )
    assert np.array_equal(arr[:], frames)


CHILD = r"""
import json, resource, sys
import numpy as np, dask, lakehub
from lakehub import arrays
arr = arrays.open("big", mode="r", client=lakehub.connect(sys.argv[1], sys.argv[2]))
x = arr.to_dask()
x[:1000].sum().compute(scheduler="synchronous")  # warm: imports, clients, the event loop
vmdata = int(next(l for l in open("/proc/self/status") if l.startswith("VmData")).split()[1]) * 1024
limit = vmdata + 64 * 2**20
resource.setrlimit(resource.RLIMIT_DATA, (limit, resource.getrlimit(resource.RLIMIT_DATA)[1]))
total = float(x.sum(dtype="float64").compute(scheduler="synchronous"))
try:
    arr[:]
    whole = "loaded"
except MemoryError:
    whole = "MemoryError"
print(json.dumps({"total": total, "whole": whole, "limit": limit, "vmdata": vmdata}))
"""


def test_a_reduction_over_an_array_larger_than_the_memory_limit(ih: Hub) -> None:
    """The array (128 MiB) is twice what the process may still allocate (64 MiB above what it
    already uses, RLIMIT_DATA): loading it whole fails, the chunked reduction completes. (At
    full size, 3 GiB under a 1 GiB cgroup limit: test_out_of_core.)"""
    a = user(ih, "oc")
    client = lakehub.connect(ih.url, ih.token(a))
    rows = 16 * 2**20 // 4  # 4 Mi rows of 4 float64: 128 MiB
    arr = arrays.create("big", shape=(rows, 4), dtype="float64", chunks=(2**18, 4), client=client)
    block = np.ones((2**18, 4))
    for start in range(0, rows, 2**18):
        arr[start : start + 2**18] = block * (start // 2**18)
    expected = sum(4 * 2**18 * float(i) for i in range(rows // 2**18))
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, ih.url, ih.token(a)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["whole"] == "MemoryError", out
    assert out["total"] == expected
