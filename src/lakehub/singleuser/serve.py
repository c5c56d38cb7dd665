"""One replica of a model endpoint: ``python -m lakehub.singleuser.serve --model DIR --name NAME
--version V --port PORT``, run by the control plane in the model's own environment, as its
owner.

It loads an MLflow model from ``DIR`` (scikit-learn models as their estimator, everything else
as a pyfunc model), predicts once on its input example, then listens on ``127.0.0.1:PORT`` and
answers the Open Inference Protocol v2 (:mod:`lakehub.singleuser.oip`) and MLflow's
``/invocations``. Only LakeHub's gateway talks to it: every request must carry the key the
control plane put in ``LAKEHUB_REPLICA_KEY`` (other accounts on the machine can reach the port,
not the key), so authentication and access live in one place, the gateway.

The HTTP/1.1 server is :mod:`lakehub.singleuser.http`. With ``--batch``, OIP inference requests
read in the same turn of the event loop are predicted as one call (:class:`Batcher`); an idle
replica never waits for more.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import os
import sys
from collections.abc import Callable, Hashable
from typing import Any
from urllib.parse import unquote

from lakehub.singleuser import http
from lakehub.singleuser.http import JSON, Answer, Reply, error, json_answer
from lakehub.singleuser.oip import BINARY_HEADER, OIPError, Request, decode, encode
from lakehub.singleuser.served import Served

KEY_HEADER = b"x-lakehub-replica-key"


# serving ---------------------------------------------------------------------------------------
def failure(err: Exception) -> Answer:
    """The answer to a request that failed: 400 for what the input caused, 500 for the model."""
    if isinstance(err, OIPError):
        return error(err.status, str(err))
    if isinstance(err, (ValueError, TypeError, KeyError, IndexError)):
        return error(400, f"the model refused the input: {type(err).__name__}: {err}")
    if type(err).__name__ == "MlflowException":
        return error(400, str(err))
    print(f"predict failed: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
    return error(500, f"the model failed: {type(err).__name__}: {err}")


class Batcher:
    """Opportunistic batching: the first inference request queued in a turn of the event loop
    schedules one flush (``call_soon``: at the end of that turn, never later); the flush
    predicts the queued requests whose inputs concatenate (:meth:`Served.batch_key`) as one
    call and answers each with its own rows. A batch whose predict fails is predicted request
    by request, so one bad request fails alone."""

    def __init__(self, served: Served, answer: Callable[[Request, dict[str, Any]], Answer]) -> None:
        self.served = served
        self.answer = answer  # a request's answer from its outputs
        self.queue: list[tuple[Hashable, Request, Any, Reply]] = []

    def add(self, req: Request, data: Any, reply: Reply) -> bool:
        """Queue a request (False: its input cannot join a batch, predict it now)."""
        key = self.served.batch_key(data)
        if key is None:
            return False
        if not self.queue:
            asyncio.get_running_loop().call_soon(self.flush)
        self.queue.append((key, req, data, reply))
        return True

    def flush(self) -> None:
        queue, self.queue = self.queue, []
        batches: dict[Hashable, list[tuple[Request, Any, Reply]]] = {}
        for key, req, data, reply in queue:
            batches.setdefault(key, []).append((req, data, reply))
        for batch in batches.values():
            outputs = self._together([data for _, data, _ in batch]) if len(batch) > 1 else None
            for i, (req, data, reply) in enumerate(batch):
                reply(self._one(req, data, outputs[i] if outputs else None))

    def _together(self, parts: list[Any]) -> list[dict[str, Any]] | None:
        try:
            return self.served.predict_together(parts)
        except Exception as err:
            print(
                f"predicting {len(parts)} requests together failed ({type(err).__name__}: "
                f"{err}): predicting each alone",
                file=sys.stderr,
                flush=True,
            )
            return None

    def _one(self, req: Request, data: Any, outputs: dict[str, Any] | None) -> Answer:
        try:
            if outputs is None:
                outputs = self.served.outputs(self.served.predict_frame(data))
            return self.answer(req, outputs)
        except Exception as err:
            return failure(err)


class App:
    """Routes requests (:data:`lakehub.singleuser.http.Handler`)."""

    def __init__(self, served: Served, key: bytes, batch: bool = False) -> None:
        self.served = served
        self.key = key
        self.name = served.name
        self.batcher = Batcher(served, self.infer_answer) if batch else None

    def handle(
        self, method: bytes, target: bytes, headers: dict[bytes, bytes], body: bytes, reply: Reply
    ) -> Answer | None:
        if self.key and not hmac.compare_digest(headers.get(KEY_HEADER, b""), self.key):
            return error(403, "this replica answers LakeHub's gateway only")
        path = unquote(target.split(b"?", 1)[0].decode("latin-1"))
        parts = [p for p in path.split("/") if p]
        try:
            return self._route(method, parts, headers, body, reply)
        except Exception as err:  # the model's own failure too: the replica lives on
            return failure(err)

    def infer_answer(self, req: Request, outputs: dict[str, Any]) -> Answer:
        out, head_len = encode(self.name, self.served.version, outputs, req)
        if head_len is None:
            return 200, JSON, out, []
        header = (b"Inference-Header-Content-Length", str(head_len).encode())
        return 200, b"application/octet-stream", out, [header]

    def _route(
        self,
        method: bytes,
        parts: list[str],
        headers: dict[bytes, bytes],
        body: bytes,
        reply: Reply,
    ) -> Answer | None:
        s = self.served
        if parts[:1] == ["v2"]:
            rest = parts[1:]
            if rest == ["health", "live"]:
                return json_answer(200, {"live": True})
            if rest == ["health", "ready"]:
                return json_answer(200, {"ready": True})
            if not rest:
                return json_answer(
                    200, {"name": "lakehub", "version": "2", "extensions": ["binary_tensor_data"]}
                )
            if rest[0] != "models" or len(rest) < 2:
                return error(404, f"no such path: /{'/'.join(parts)}")
            if rest[1] != self.name:
                return error(404, f"no model named {rest[1]!r} here (this is {self.name!r})")
            tail = rest[2:]
            if tail[:1] == ["versions"]:
                if len(tail) < 2 or tail[1] != s.version:
                    wanted = tail[1] if len(tail) > 1 else ""
                    return error(404, f"model {self.name!r} has no version {wanted!r} here")
                tail = tail[2:]
            if not tail and method == b"GET":
                return json_answer(200, s.metadata())
            if tail == ["ready"] and method == b"GET":
                return json_answer(200, {"name": self.name, "ready": True})
            if tail == ["infer"]:
                if method != b"POST":
                    return error(405, "infer takes POST")
                length = headers.get(BINARY_HEADER.encode())
                req = decode(body, int(length) if length and length.isdigit() else None)
                data = s.model_input(req.inputs)
                if self.batcher is not None and self.batcher.add(req, data, reply):
                    return None
                return self.infer_answer(req, s.outputs(s.predict_frame(data)))
            return error(404, f"no such path: /{'/'.join(parts)}")
        if parts == ["invocations"] and method == b"POST":
            given = headers.get(b"content-type", b"application/json").decode("latin-1")
            return 200, JSON, s.invocations(body, given), []
        if parts in (["ping"], ["health"]):
            return 200, JSON, b"{}", []
        if parts == ["lakehub", "example"]:
            return json_answer(200, s.example_request())
        return error(404, f"no such path: /{'/'.join(parts)}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m lakehub.singleuser.serve")
    p.add_argument("--model", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--version", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument(
        "--batch", action="store_true", help="predict inference requests that arrive together"
    )
    args = p.parse_args(argv)
    key = os.environ.pop("LAKEHUB_REPLICA_KEY", "").encode()
    app = App(Served(args.model, args.name, args.version), key, batch=args.batch)
    batching = ", batching" if args.batch else ""
    http.run(
        app.handle,
        args.host,
        args.port,
        f"serving {args.name} version {args.version} on {args.host}:{args.port}{batching}",
    )


if __name__ == "__main__":
    main()
