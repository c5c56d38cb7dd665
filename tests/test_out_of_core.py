"""Out of core: a WAV stream and an array each three times a memory limit, each worked through
in a child process held to that limit (a cgroup: the kernel kills it if it goes over).

The limit is 384 MiB, so the data is 1.125 GiB each: the same ratio as the sizes first asked for
(3 GiB under 1 GiB), at a third of the suite's time. ``LAKEHUB_TEST_MEMORY_LIMIT_MIB=1024``
runs those full sizes (``bench/arrays.py`` measures the array at 3 GiB against its anchor).

The data is written the fastest honest way: the WAV as a raw stream's objects
(``<stream path>/part-<segment>-<offset>.bin``, what the ingestion mover writes, in key order),
uploaded straight to the lake with the user's own keys; the array with ``arrays.append``,
two chunks at a time (its values, whole numbers in a ramp, compress some 35x with the arrays'
default Blosc LZ4 and byte shuffling: the reduction decompresses all of it). The ingestion path
itself is covered by test_streams_arrays and the ingestion tests. The sizes, times and memory
peaks are written to ``test-artifacts/out_of_core.json``.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

import lakehub
from conftest import Hub
from ingest_client import user
from lakehub import arrays, streams
from memlimit import run_limited

GIB = 2**30
LIMIT = int(os.environ.get("LAKEHUB_TEST_MEMORY_LIMIT_MIB", "384")) * 2**20
DATA = 3 * LIMIT  # each of the stream and the array


def remove(client: lakehub.Client, path: str) -> None:
    """What a test stored, out of the worker's hub's lake when it ends."""
    fs = client.lake.credentials().filesystem()
    fs.rm(path.removeprefix("s3://"), recursive=True)


def limited(argv: list[str], timeout: float = 600) -> tuple[dict[str, Any], dict[str, int]]:
    """Run a child script under the memory limit; its last line of output is JSON."""
    proc, mem = run_limited(
        [sys.executable, "-c", *argv], LIMIT, timeout, capture_output=True, text=True
    )
    assert mem["oom_kills"] == 0, (mem, proc.stderr[-3000:])
    assert proc.returncode == 0, (mem, proc.stderr[-3000:])
    assert mem["peak"] < LIMIT, mem
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out, mem


def note(artifacts: Path, what: str, figures: dict[str, float]) -> None:
    """The sizes, times and peaks, for whoever looks (tests never assert timings)."""
    path = artifacts / "out_of_core.json"
    seen = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**seen, what: figures}, indent=1) + "\n")
    print(f"\n{what}: {figures}")


# ------------------------------------------------------------------------------ a WAV stream
RATE = 48_000
TONES = {440: 2**28, 3000: 2**27}  # Hz -> amplitude, all along
LATE = (7000, 2**27)  # a tone only in the last eighth: found only if the reading gets there
NOISE = 2**26  # uniform in [-NOISE, NOISE), a pool of POOL samples played round and round
POOL = 16_777_259


class Wav:
    """A mono 32-bit PCM WAV of ``nbytes`` bytes (header included), made piece by piece: the
    tones repeat every second (whole numbers of periods), so each piece is slices and sums of
    precomputed arrays, not sines computed 800 million times."""

    def __init__(self, nbytes: int, piece: int) -> None:
        self.frames = (nbytes - 44) // 4
        self.nbytes, self.piece = 44 + 4 * self.frames, piece
        data = 4 * self.frames
        self.header = (
            b"RIFF"
            + struct.pack("<I", 36 + data)
            + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, 1, RATE, 4 * RATE, 4, 32)
            + b"data"
            + struct.pack("<I", data)
        )
        self.late_start = self.frames * 7 // 8
        span = piece // 4 + 2  # frames a piece touches, at most
        t = np.arange(RATE + span) / RATE
        self.tones = sum(a * np.sin(2 * np.pi * f * t) for f, a in TONES.items()).astype(np.int32)
        self.late = (LATE[1] * np.sin(2 * np.pi * LATE[0] * t)).astype(np.int32)
        pool = np.random.default_rng(11).integers(-NOISE, NOISE, POOL, dtype=np.int32)
        self.noise = np.concatenate([pool, pool[:span]])
        self.sum = 0  # of every sample, as the pieces are made

    def samples(self, start: int, n: int) -> np.ndarray:
        x = self.tones[start % RATE : start % RATE + n] + self.noise[start % POOL :][:n]
        if start + n > self.late_start:
            k = max(0, self.late_start - start)
            x[k:] += self.late[(start + k) % RATE :][: n - k]
        return x

    def pieces(self) -> Any:
        """(index, bytes) of each object: byte ranges of ``piece``, cut anywhere (mid-frame)."""
        for i, a in enumerate(range(0, self.nbytes, self.piece)):
            b = min(a + self.piece, self.nbytes)
            f0, f1 = max(0, (a - 44) // 4), min(self.frames, -(-(b - 44) // 4))
            x = self.samples(f0, f1 - f0)
            owned = x[(a - 44 + 3) // 4 - f0 if a > 44 else 0 : (b - 44 + 3) // 4 - f0]
            self.sum += int(owned.sum(dtype=np.int64))  # frames starting in this piece
            raw = (self.header if a == 0 else b"") + x.tobytes()
            lo = a - (44 + 4 * f0) if a else 0
            yield i, raw[lo : lo + b - a]


def write_raw_stream(client: lakehub.Client, name: str, wav: Wav) -> float:
    """The stream's objects straight into the lake, two uploads in flight; returns seconds."""
    streams.create(name, tags=[f"{name}.*"], kind="raw", client=client)
    bucket, _, prefix = streams.get(name, client)["path"][5:].partition("/")
    s3 = client.lake.credentials().boto3_client()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        pending: list[Any] = []
        for i, body in wav.pieces():
            pending.append(
                pool.submit(
                    s3.put_object,
                    Bucket=bucket,
                    Body=body,
                    Key=f"{prefix}/part-{0:012d}-{i:012d}.bin",
                )
            )
            while len(pending) > 2:  # bounded: at most three pieces in memory
                pending.pop(0).result()
        for p in pending:
            p.result()
    return time.perf_counter() - t0


WELCH = r"""
import json, sys, time, wave
import numpy as np, scipy.fft, scipy.signal
import lakehub
from lakehub import streams
SEG, PER_READ = 8192, 512  # FFT length; segments per read (16 MiB of samples)
t0 = time.perf_counter()
client = lakehub.connect(sys.argv[1], sys.argv[2])
with streams.open(sys.argv[3], client=client) as f, wave.open(f) as w:
    rate, frames = w.getframerate(), w.getnframes()
    assert w.getsampwidth() == 4 and w.getnchannels() == 1, w.getparams()
    window = scipy.signal.get_window("hann", SEG).astype(np.float32)
    power = np.zeros(SEG // 2 + 1)
    n = total = segments = 0
    while data := w.readframes(SEG * PER_READ):
        x = np.frombuffer(data, "<i4")
        n, total = n + len(x), total + int(x.sum(dtype=np.int64))
        full = len(x) // SEG
        if full:  # Welch: the mean power spectrum of windowed segments
            y = x[: full * SEG].reshape(full, SEG).astype(np.float32)
            y *= window
            spec = scipy.fft.rfft(y, axis=1, workers=2).view(np.float32)
            np.square(spec, out=spec)
            power += spec.sum(axis=0, dtype=np.float64).reshape(-1, 2).sum(axis=1)
            segments += full
freqs = np.fft.rfftfreq(SEG, 1 / rate)
peaks, _ = scipy.signal.find_peaks(power, distance=16)
top = sorted(peaks[np.argsort(power[peaks])[-3:]].tolist())
print(json.dumps({"rate": rate, "frames": frames, "read": n, "sum": total,
                  "segments": segments, "peaks": [float(freqs[i]) for i in top],
                  "bin": float(freqs[1]), "seconds": time.perf_counter() - t0}))
"""


def test_an_fft_over_a_wav_stream_three_times_the_memory_limit(hub: Hub, artifacts: Path) -> None:
    a = user(hub, "ow")
    client = lakehub.connect(hub.url, hub.token(a))
    wav = Wav(DATA + 44, piece=64 * 2**20 + 6)  # frames cut across the objects
    try:
        wrote = write_raw_stream(client, "tape", wav)
        out, mem = limited([WELCH, hub.url, hub.token(a), "tape"])
    finally:
        remove(client, streams.get("tape", client)["path"])
    note(
        artifacts,
        "wav",
        {
            "gib": wav.nbytes / GIB,
            "write_s": wrote,
            "read_s": out["seconds"],
            "peak_mib": mem["peak"] / 2**20,
        },
    )
    assert (out["rate"], out["frames"], out["read"]) == (RATE, wav.frames, wav.frames)
    assert out["sum"] == wav.sum  # every sample read once
    assert out["segments"] == wav.frames // 8192
    found = out["peaks"]
    for f in [*TONES, LATE[0]]:
        assert any(abs(p - f) <= out["bin"] for p in found), (f, found)


# ------------------------------------------------------------------------------ an array
ROWS_PER_CHUNK, COLS, M = 2**19, 8, 1_000_003  # 32 MiB chunks; a[i, j] = (i % M) * (j + 1)
CHUNKS = 2 * -(-DATA // (2 * ROWS_PER_CHUNK * COLS * 8))  # DATA of float64, an even count


def block(start: int, rows: int) -> np.ndarray:
    i = np.arange(start, start + rows, dtype=np.int64) % M
    return i[:, None].astype(np.float64) * np.arange(1, COLS + 1, dtype=np.float64)


def expected(rows: int) -> tuple[list[float], list[float]]:
    """Closed forms: per column, the sum and the max of (i % M) * (j + 1) for i < rows."""
    q, r = divmod(rows, M)
    base = q * M * (M - 1) // 2 + r * (r - 1) // 2
    top = M - 1 if q else r - 1
    return [float(base * (j + 1)) for j in range(COLS)], [float(top * (j + 1)) for j in range(COLS)]


REDUCE = r"""
import json, sys, time
import dask, numpy as np
import lakehub
from lakehub import arrays
t0 = time.perf_counter()
arr = arrays.open(sys.argv[3], mode="r", client=lakehub.connect(sys.argv[1], sys.argv[2]))
x = arr.to_dask()
sums, means, maxes = dask.compute(x.sum(axis=0), x.mean(axis=0), x.max(axis=0))
print(json.dumps({"shape": list(arr.shape), "nbytes": x.nbytes, "sums": sums.tolist(),
                  "means": means.tolist(), "maxes": maxes.tolist(),
                  "seconds": time.perf_counter() - t0}))
"""


def test_a_reduction_over_an_array_three_times_the_memory_limit(hub: Hub, artifacts: Path) -> None:
    a = user(hub, "oa")
    client = lakehub.connect(hub.url, hub.token(a))
    arr = arrays.create(
        "big3", shape=(0, COLS), dtype="float64", chunks=(ROWS_PER_CHUNK, COLS), client=client
    )
    try:
        t0 = time.perf_counter()
        for k in range(0, CHUNKS, 2):  # two chunks a call: Zarr compresses them side by side
            arr.append(block(k * ROWS_PER_CHUNK, 2 * ROWS_PER_CHUNK))
        wrote = time.perf_counter() - t0
        rows = CHUNKS * ROWS_PER_CHUNK
        assert arr.shape == (rows, COLS)
        out, mem = limited([REDUCE, hub.url, hub.token(a), "big3"])
        stored = client.lake.credentials().filesystem().du(arr.path, total=True)
    finally:
        remove(client, arr.path)
    note(
        artifacts,
        "array",
        {
            "gib": out["nbytes"] / GIB,
            "stored_mib": stored / 2**20,
            "write_s": wrote,
            "read_s": out["seconds"],
            "peak_mib": mem["peak"] / 2**20,
        },
    )
    assert out["nbytes"] >= 3 * LIMIT
    sums, maxes = expected(rows)
    assert out["sums"] == sums
    assert out["maxes"] == maxes
    assert out["means"] == [s / rows for s in sums]
