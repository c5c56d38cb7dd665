"""The receivers' process (``python -m lakehub.server.ingest``), run by ``lakehub up``.

One asyncio loop serves Forward and HTTP; the log's writer thread fsyncs; the lake writer
thread moves batches to the lake. SIGTERM stops taking connections, lets the log finish what it
was given, and stops. ``kill -9`` at any moment loses nothing acknowledged (see ``log.py``).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import sys
import threading

import uvicorn

from lakehub.server.config import Settings, load_settings
from lakehub.server.db import Database
from lakehub.server.identity.users import Directory
from lakehub.server.ingest import forward
from lakehub.server.ingest.http import app as http_app
from lakehub.server.ingest.intake import STATS_EVERY, Intake, counted
from lakehub.server.ingest.log import LogWriter
from lakehub.server.ingest.mover import Mover, checkpoint
from lakehub.server.ingest.registry import CHANGED
from lakehub.server.ingest.sinks import S3Writer, sinks
from lakehub.server.lake import open_lake
from lakehub.server.runtime import load_runtime, tokens
from lakehub.server.vault import Vault

log = logging.getLogger("lakehub.server.ingest")


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    if not settings.forward_tls_cert:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(
        str(settings.forward_tls_cert),
        str(settings.forward_tls_key) if settings.forward_tls_key else None,
    )
    return ctx


async def run(settings: Settings) -> None:
    rt = load_runtime(settings)
    if rt is None:
        raise SystemExit(f"no running hub in {settings.data_dir}")
    tok = tokens(settings)
    db = Database(settings.database_url)
    lake = open_lake(settings, rt, tok)
    directory = Directory(db, Vault(settings.state_dir), lake)
    logw = LogWriter(
        settings.ingest_dir / "log",
        settings.ingest_segment_bytes,
        settings.ingest_buffer_max_bytes,
        settings.ingest_dedupe_seconds,
    )
    logw.open(checkpoint(db), counted(db))
    intake = Intake(directory, logw, settings.ingest_dir / CHANGED)
    intake.flush_stats()  # before any data: a kill -9 from now on is counted again from here
    s3 = S3Writer(lake)
    mover = Mover(
        intake,
        logw,
        sinks(settings, s3, intake.message_limit),
        settings.ingest_batch_seconds,
        probe=s3.probe,
    )
    mover.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    fwd = await forward.serve(
        intake, settings.ingest_host, rt.ports["forward"], tls_context(settings)
    )
    config = uvicorn.Config(
        http_app(intake, tok.metrics),
        host=settings.ingest_host,
        port=rt.ports["ingest_http"],
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
    web = uvicorn.Server(config)
    # uvicorn takes SIGTERM/SIGINT while it serves and raises them again when it ends, so the
    # handlers above run either way
    web_task = asyncio.create_task(web.serve())
    # the other threads (the log's fsyncs, the lake writer's puts) hand the interpreter back
    # every 0.5 ms, not 5: a receiver waiting for it holds its sender's acknowledgment
    sys.setswitchinterval(0.0005)
    log.info(
        "receiving: Forward on %s:%d%s, HTTP on %s:%d",
        settings.ingest_host,
        rt.ports["forward"],
        " (TLS)" if settings.forward_tls_cert else "",
        settings.ingest_host,
        rt.ports["ingest_http"],
    )
    stats = threading.Event()

    def flush_stats() -> None:
        while not stats.wait(STATS_EVERY):
            try:
                intake.flush_stats()
            except Exception as err:
                log.warning("cannot record stream counters: %s", err)

    flusher = threading.Thread(target=flush_stats, name="stats", daemon=True)
    flusher.start()
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait([stopping, web_task], return_when=asyncio.FIRST_COMPLETED)
    fwd.close()
    web.should_exit = True
    try:
        await web_task
    except (SystemExit, Exception) as err:  # e.g. the HTTP port was taken
        log.error("the HTTP receiver stopped: %r", err)
    logw.close()
    mover.stop()
    stats.set()
    flusher.join(5)
    intake.flush_stats()
    db.engine.dispose()
    log.info("stopped")


def main() -> None:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stdout,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    logging.getLogger("botocore").setLevel(logging.WARNING)
    import uvloop

    # the receivers' loop in C: bench/ingest.py, asyncio and uvloop alternated three times,
    # medians: Forward +9 %, HTTP NDJSON +24 % acknowledged per second (ranges overlapping)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run(load_settings()))
