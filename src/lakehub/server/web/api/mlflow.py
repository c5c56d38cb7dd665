"""MLflow's REST API (tracking, logged models, registry, proxied artifacts), behind LakeHub's
identity: ``MLFLOW_TRACKING_URI=<hub>/services/lakehub/mlflow`` and a LakeHub (JupyterHub) token
as ``MLFLOW_TRACKING_TOKEN``. The paths and JSON are MLflow's own (``/api/2.0/mlflow/...``), so
MLflow's client works unchanged; who may see and change what is LakeHub's (see
:mod:`lakehub.server.models`). Not in LakeHub's OpenAPI document: MLflow documents it.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from lakehub.server.models.base import ModelsError, Reader
from lakehub.server.web.auth import person
from lakehub.server.web.deps import State, User

router = APIRouter(prefix="/mlflow", include_in_schema=False)
API = "/api/2.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
SPOOL = 16 << 20  # artifact uploads up to this stay in memory, larger ones go to a file


def error(err: ModelsError) -> JSONResponse:
    return JSONResponse({"error_code": err.code, "message": str(err)}, status_code=err.status)


async def args(request: Request) -> dict[str, Any]:
    """A request's arguments: the query for GET, else the JSON body (MLflow's client sends
    repeated query keys for lists)."""
    if request.method == "GET":
        out: dict[str, Any] = {}
        for key, value in request.query_params.multi_items():
            if key in out:
                out[key] = [*(out[key] if isinstance(out[key], list) else [out[key]]), value]
            else:
                out[key] = value
        return out
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise ModelsError("the body is not JSON", "BAD_REQUEST") from None
    if not isinstance(body, dict):
        raise ModelsError("the body must be a JSON object", "BAD_REQUEST")
    return _shaped(body)


OBJECT_LISTS = {"tags", "metrics", "params", "datasets", "models"}
TEXT_LISTS = {"experiment_ids", "order_by"}
NUMBERS = {"value", "timestamp", "step", "start_time", "end_time", "max_results"}


def _shaped(body: dict[str, Any]) -> dict[str, Any]:
    """The body's fields as the handlers take them, or a 400 naming the one that is not: lists
    of objects, lists of text, numbers; everything else is text (a number given for a name is
    taken as its text)."""
    out: dict[str, Any] = {}
    for key, value in body.items():
        if value is None:
            continue
        if key in OBJECT_LISTS:
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                raise ModelsError(f"'{key}' must be a list of objects", "BAD_REQUEST")
        elif key in TEXT_LISTS:
            if not isinstance(value, list) or any(isinstance(v, (dict, list)) for v in value):
                raise ModelsError(f"'{key}' must be a list of strings", "BAD_REQUEST")
            value = [str(v) for v in value]
        elif isinstance(value, (dict, list)):
            raise ModelsError(f"'{key}' must be a single value", "BAD_REQUEST")
        elif key not in NUMBERS and key != "status":
            value = str(value)
        out[key] = value
    return out


def _reader(who: Any) -> Reader:
    return Reader(person(who, "experiments"), who.admin)


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _int(value: Any, default: int) -> int:
    try:
        return int(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        raise ModelsError(f"not a number: {value!r}") from None


def _need(a: dict[str, Any], *keys: str) -> None:
    for key in keys:
        if a.get(key) in (None, ""):
            raise ModelsError(f"missing value for required parameter '{key}'")


Handler = Callable[[State, Reader, dict[str, Any]], Any]


def rpc(path: str, *methods: str) -> Callable[[Handler], Handler]:
    """Register ``handler(state, reader, args)`` (run off the event loop) at ``path``."""

    def register(handler: Handler) -> Handler:
        async def endpoint(request: Request, who: User, state: State) -> Response:
            try:
                a = await args(request)
                reader = _reader(who)
                out = await state.run(handler, state, reader, a)
            except ModelsError as err:
                return error(err)
            return JSONResponse(out if out is not None else {})

        router.add_api_route(path, endpoint, methods=list(methods), name=handler.__name__)
        return handler

    return register


# experiments ---------------------------------------------------------------------------------
@rpc(f"{API}/experiments/create", "POST")
def create_experiment(state: State, who: Reader, a: dict[str, Any]) -> Any:
    _need(a, "name")
    return {"experiment_id": state.tracking.create_experiment(who, a["name"], a.get("tags"))}


@rpc(f"{API}/experiments/get", "GET")
def get_experiment(state: State, who: Reader, a: dict[str, Any]) -> Any:
    _need(a, "experiment_id")
    return {"experiment": state.tracking.get_experiment(who, a["experiment_id"])}


@rpc(f"{API}/experiments/get-by-name", "GET")
def get_experiment_by_name(state: State, who: Reader, a: dict[str, Any]) -> Any:
    _need(a, "experiment_name")
    return {"experiment": state.tracking.experiment_by_name(who, a["experiment_name"])}


@rpc(f"{API}/experiments/search", "GET", "POST")
def search_experiments(state: State, who: Reader, a: dict[str, Any]) -> Any:
    found, token = state.tracking.search_experiments(
        who,
        str(a.get("view_type") or "ACTIVE_ONLY"),
        a.get("filter"),
        _int(a.get("max_results"), 1000),
        _list(a.get("order_by")),
        a.get("page_token"),
    )
    return {"experiments": found, **({"next_page_token": token} if token else {})}


@rpc(f"{API}/experiments/update", "POST")
def update_experiment(state: State, who: Reader, a: dict[str, Any]) -> Any:
    _need(a, "experiment_id", "new_name")
    state.tracking.update_experiment(who, a["experiment_id"], a["new_name"])


@rpc(f"{API}/experiments/delete", "POST")
def delete_experiment(state: State, who: Reader, a: dict[str, Any]) -> Any:
    _need(a, "experiment_id")
    state.tracking.set_experiment_lifecycle(who, a["experiment_id"], deleted=True)


@rpc(f"{API}/experiments/restore", "POST")
def restore_experiment(state: State, who: Reader, a: dict[str, Any]) -> Any:
    _need(a, "experiment_id")
    state.tracking.set_experiment_lifecycle(who, a["experiment_id"], deleted=False)


@rpc(f"{API}/experiments/set-experiment-tag", "POST")
def set_experiment_tag(state: State, who: Reader, a: dict[str, Any]) -> Any:
    _need(a, "experiment_id", "key")
    state.tracking.set_experiment_tag(who, a["experiment_id"], a["key"], a.get("value", ""))


# runs ----------------------------------------------------------------------------------------
@rpc(f"{API}/runs/create", "POST")
def create_run(state: State, who: Reader, a: dict[str, Any]) -> Any:
    run = state.tracking.create_run(
        who,
        str(a.get("experiment_id") or "0"),
        a.get("run_name"),
        a.get("start_time"),
        a.get("tags"),
    )
    return {"run": run}


@rpc(f"{API}/runs/get", "GET")
def get_run(state: State, who: Reader, a: dict[str, Any]) -> Any:
    return {"run": state.tracking.get_run(who, a.get("run_id") or a.get("run_uuid") or "")}


@rpc(f"{API}/runs/update", "POST")
def update_run(state: State, who: Reader, a: dict[str, Any]) -> Any:
    info = state.tracking.update_run(
        who,
        a.get("run_id") or a.get("run_uuid") or "",
        a.get("status"),
        a.get("end_time"),
        a.get("run_name"),
    )
    return {"run_info": info}


@rpc(f"{API}/runs/delete", "POST")
def delete_run(state: State, who: Reader, a: dict[str, Any]) -> Any:
    _need(a, "run_id")
    state.tracking.set_run_lifecycle(who, a["run_id"], deleted=True)


@rpc(f"{API}/runs/restore", "POST")
def restore_run(state: State, who: Reader, a: dict[str, Any]) -> Any:
    _need(a, "run_id")
    state.tracking.set_run_lifecycle(who, a["run_id"], deleted=False)


def _run_id(a: dict[str, Any]) -> str:
    rid = a.get("run_id") or a.get("run_uuid")
    if not rid:
        raise ModelsError("missing value for required parameter 'run_id'")
    return str(rid)


@rpc(f"{API}/runs/log-metric", "POST")
def log_metric(state: State, who: Reader, a: dict[str, Any]) -> Any:
    _need(a, "key", "value")
    state.tracking.log_batch(who, _run_id(a), metrics=[a])


@rpc(f"{API}/runs/log-parameter", "POST")
def log_param(state: State, who: Reader, a: dict[str, Any]) -> Any:
    _need(a, "key")
    state.tracking.log_batch(who, _run_id(a), params=[a])


@rpc(f"{API}/runs/set-tag", "POST")
def set_tag(state: State, who: Reader, a: dict[str, Any]) -> Any:
    _need(a, "key")
    state.tracking.log_batch(who, _run_id(a), tags=[a])


@rpc(f"{API}/runs/delete-tag", "POST")
def delete_tag(state: State, who: Reader, a: dict[str, Any]) -> Any:
    _need(a, "key")
    state.tracking.delete_tag(who, _run_id(a), a["key"])


@rpc(f"{API}/runs/log-batch", "POST")
def log_batch(state: State, who: Reader, a: dict[str, Any]) -> Any:
    state.tracking.log_batch(
        who, _run_id(a), _list(a.get("metrics")), _list(a.get("params")), _list(a.get("tags"))
    )


@rpc(f"{API}/runs/log-inputs", "POST")
def log_inputs(state: State, who: Reader, a: dict[str, Any]) -> Any:
    state.tracking.log_io(who, _run_id(a), "inputs", _list(a.get("datasets")))


@rpc(f"{API}/runs/outputs", "POST")
def log_outputs(state: State, who: Reader, a: dict[str, Any]) -> Any:
    state.tracking.log_io(who, _run_id(a), "outputs", _list(a.get("models")))


@rpc(f"{API}/runs/search", "POST", "GET")
def search_runs(state: State, who: Reader, a: dict[str, Any]) -> Any:
    runs, token = state.tracking.search_runs(
        who,
        [str(e) for e in _list(a.get("experiment_ids"))],
        a.get("filter"),
        str(a.get("run_view_type") or "ACTIVE_ONLY"),
        _int(a.get("max_results"), 1000),
        _list(a.get("order_by")),
        a.get("page_token"),
    )
    return {"runs": runs, **({"next_page_token": token} if token else {})}


@rpc(f"{API}/metrics/get-history", "GET")
def metric_history(state: State, who: Reader, a: dict[str, Any]) -> Any:
    _need(a, "metric_key")
    return {"metrics": state.tracking.metric_history(who, _run_id(a), a["metric_key"])}


# logged models -------------------------------------------------------------------------------
@rpc(f"{API}/logged-models", "POST")
def create_logged_model(state: State, who: Reader, a: dict[str, Any]) -> Any:
    model = state.tracking.create_logged_model(
        who,
        str(a.get("experiment_id") or "0"),
        a.get("name"),
        a.get("model_type"),
        a.get("source_run_id"),
        a.get("params"),
        a.get("tags"),
    )
    return {"model": model}


@rpc(f"{API}/logged-models/search", "POST")
def search_logged_models(state: State, who: Reader, a: dict[str, Any]) -> Any:
    found, token = state.tracking.search_logged_models(
        who,
        [str(e) for e in _list(a.get("experiment_ids"))],
        a.get("filter"),
        _int(a.get("max_results"), 100),
        a.get("page_token"),
    )
    return {"models": found, **({"next_page_token": token} if token else {})}


def _model_route(suffix: str, *methods: str) -> Callable[[Callable[..., Any]], Any]:
    """Routes with the logged model's id in the path."""

    def register(fn: Callable[[State, Reader, str, dict[str, Any], dict[str, str]], Any]) -> Any:
        async def endpoint(request: Request, model_id: str, who: User, state: State) -> Response:
            try:
                a = await args(request)
                out = await state.run(
                    fn, state, _reader(who), model_id, a, dict(request.path_params)
                )
            except ModelsError as err:
                return error(err)
            return JSONResponse(out if out is not None else {})

        router.add_api_route(
            f"{API}/logged-models/{{model_id}}{suffix}",
            endpoint,
            methods=list(methods),
            name=fn.__name__,
        )
        return fn

    return register


@_model_route("", "GET")
def get_logged_model(state: State, who: Reader, mid: str, a: Any, p: Any) -> Any:
    return {"model": state.tracking.get_logged_model(who, mid)}


@_model_route("", "PATCH")
def finalize_logged_model(state: State, who: Reader, mid: str, a: Any, p: Any) -> Any:
    status = a.get("status")
    if isinstance(status, int):  # the enum's number
        status = (
            [
                "LOGGED_MODEL_STATUS_UNSPECIFIED",
                "LOGGED_MODEL_PENDING",
                "LOGGED_MODEL_READY",
                "LOGGED_MODEL_UPLOAD_FAILED",
            ][status]
            if 0 <= status < 4
            else "?"
        )
    return {"model": state.tracking.update_logged_model(who, mid, status=status)}


@_model_route("", "DELETE")
def delete_logged_model(state: State, who: Reader, mid: str, a: Any, p: Any) -> Any:
    state.tracking.delete_logged_model(who, mid)


@_model_route("/tags", "PATCH")
def set_logged_model_tags(state: State, who: Reader, mid: str, a: Any, p: Any) -> Any:
    tags = {str(t.get("key")): str(t.get("value", "")) for t in _list(a.get("tags"))}
    return {"model": state.tracking.update_logged_model(who, mid, tags=tags)}


@_model_route("/tags/{tag_key:path}", "DELETE")
def delete_logged_model_tag(state: State, who: Reader, mid: str, a: Any, p: Any) -> Any:
    state.tracking.update_logged_model(who, mid, drop_tag=p["tag_key"])


@_model_route("/params", "POST")
def log_logged_model_params(state: State, who: Reader, mid: str, a: Any, p: Any) -> Any:
    params = {str(t.get("key")): str(t.get("value", "")) for t in _list(a.get("params"))}
    state.tracking.update_logged_model(who, mid, params=params)


# the registry --------------------------------------------------------------------------------
RM = f"{API}/registered-models"
MV = f"{API}/model-versions"


@rpc(f"{RM}/create", "POST")
def create_registered_model(state: State, who: Reader, a: dict[str, Any]) -> Any:
    _need(a, "name")
    model = state.registry.create_model(who, a["name"], a.get("tags"), a.get("description"))
    return {"registered_model": model}


@rpc(f"{RM}/get", "GET")
def get_registered_model(state: State, who: Reader, a: dict[str, Any]) -> Any:
    _need(a, "name")
    return {"registered_model": state.registry.get_model(who, a["name"])}


@rpc(f"{RM}/update", "PATCH")
def update_registered_model(state: State, who: Reader, a: dict[str, Any]) -> Any:
    _need(a, "name")
    model = state.registry.update_model(who, a["name"], description=a.get("description"))
    return {"registered_model": model}


@rpc(f"{RM}/rename", "POST")
def rename_registered_model(state: State, who: Reader, a: dict[str, Any]) -> Any:
    _need(a, "name", "new_name")
    return {"registered_model": state.registry.update_model(who, a["name"], new_name=a["new_name"])}


@rpc(f"{RM}/delete", "DELETE")
def delete_registered_model(state: State, who: Reader, a: dict[str, Any]) -> Any:
    _need(a, "name")
    state.registry.delete_model(who, a["name"])


@rpc(f"{RM}/search", "GET")
def search_registered_models(state: State, who: Reader, a: dict[str, Any]) -> Any:
    found, token = state.registry.search_models(
        who,
        a.get("filter"),
        _int(a.get("max_results"), 100),
        _list(a.get("order_by")),
        a.get("page_token"),
    )
    return {"registered_models": found, **({"next_page_token": token} if token else {})}


@rpc(f"{RM}/set-tag", "POST")
def set_registered_model_tag(state: State, who: Reader, a: dict[str, Any]) -> Any:
    _need(a, "name", "key")
    state.registry.update_model(who, a["name"], tag=(a["key"], str(a.get("value", ""))))


@rpc(f"{RM}/delete-tag", "DELETE")
def delete_registered_model_tag(state: State, who: Reader, a: dict[str, Any]) -> Any:
    _need(a, "name", "key")
    state.registry.update_model(who, a["name"], drop_tag=a["key"])


@rpc(f"{RM}/alias", "POST")
def set_alias(state: State, who: Reader, a: dict[str, Any]) -> Any:
    _need(a, "name", "alias", "version")
    state.registry.set_alias(who, a["name"], a["alias"], str(a["version"]))


@rpc(f"{RM}/alias", "DELETE")
def delete_alias(state: State, who: Reader, a: dict[str, Any]) -> Any:
    _need(a, "name", "alias")
    state.registry.delete_alias(who, a["name"], a["alias"])


@rpc(f"{RM}/alias", "GET")
def version_by_alias(state: State, who: Reader, a: dict[str, Any]) -> Any:
    _need(a, "name", "alias")
    return {"model_version": state.registry.by_alias(who, a["name"], a["alias"])}


@rpc(f"{RM}/get-latest-versions", "GET", "POST")
def latest_versions(state: State, who: Reader, a: dict[str, Any]) -> Any:
    _need(a, "name")
    model = state.registry.get_model(who, a["name"])
    return {"model_versions": model["latest_versions"]}


@rpc(f"{MV}/create", "POST")
def create_model_version(state: State, who: Reader, a: dict[str, Any]) -> Any:
    _need(a, "name")
    if not a.get("source") and not a.get("model_id"):
        raise ModelsError("missing value for required parameter 'source'")
    version = state.registry.create_version(
        who,
        a["name"],
        a.get("source") or "",
        a.get("run_id"),
        a.get("model_id"),
        a.get("tags"),
        a.get("description"),
    )
    return {"model_version": version}


@rpc(f"{MV}/get", "GET")
def get_model_version(state: State, who: Reader, a: dict[str, Any]) -> Any:
    _need(a, "name", "version")
    return {"model_version": state.registry.get_version(who, a["name"], a["version"])}


@rpc(f"{MV}/update", "PATCH")
def update_model_version(state: State, who: Reader, a: dict[str, Any]) -> Any:
    _need(a, "name", "version")
    version = state.registry.update_version(
        who, a["name"], a["version"], description=a.get("description")
    )
    return {"model_version": version}


@rpc(f"{MV}/delete", "DELETE")
def delete_model_version(state: State, who: Reader, a: dict[str, Any]) -> Any:
    _need(a, "name", "version")
    state.registry.delete_version(who, a["name"], a["version"])


@rpc(f"{MV}/search", "GET")
def search_model_versions(state: State, who: Reader, a: dict[str, Any]) -> Any:
    found, token = state.registry.search_versions(
        who, a.get("filter"), _int(a.get("max_results"), 10_000), a.get("page_token")
    )
    return {"model_versions": found, **({"next_page_token": token} if token else {})}


@rpc(f"{MV}/get-download-uri", "GET")
def download_uri(state: State, who: Reader, a: dict[str, Any]) -> Any:
    _need(a, "name", "version")
    return {"artifact_uri": state.registry.download_uri(who, a["name"], a["version"])}


@rpc(f"{MV}/set-tag", "POST")
def set_model_version_tag(state: State, who: Reader, a: dict[str, Any]) -> Any:
    _need(a, "name", "version", "key")
    state.registry.update_version(
        who, a["name"], a["version"], tag=(a["key"], str(a.get("value", "")))
    )


@rpc(f"{MV}/delete-tag", "DELETE")
def delete_model_version_tag(state: State, who: Reader, a: dict[str, Any]) -> Any:
    _need(a, "name", "version", "key")
    state.registry.update_version(who, a["name"], a["version"], drop_tag=a["key"])


@rpc(f"{MV}/transition-stage", "POST")
def transition_stage(state: State, who: Reader, a: dict[str, Any]) -> Any:
    raise ModelsError(
        "stages are not kept here: give the version an alias (champion, challenger) instead"
    )


# artifacts -----------------------------------------------------------------------------------
def _place(state: State, who: Reader, path: str, write: bool) -> tuple[str, str]:
    if path.strip("/").split("/")[0] == "registry":
        if write:
            raise ModelsError("a registered version's files cannot be changed", "PERMISSION_DENIED")
        return state.registry.artifact_place(who, path)
    return state.tracking.artifact_place(who, path, write)


async def _artifact(who: User, work: Callable[[Reader], Awaitable[Response]]) -> Response:
    try:
        return await work(_reader(who))
    except ModelsError as err:
        return error(err)


@router.put(ARTIFACTS + "/{path:path}")
async def upload(path: str, request: Request, who: User, state: State) -> Response:
    async def work(r: Reader) -> Response:
        bucket, key = await state.run(_place, state, r, path, True)
        with tempfile.SpooledTemporaryFile(max_size=SPOOL) as spool:
            async for chunk in request.stream():
                spool.write(chunk)  # memory up to SPOOL; past it, a local file's page cache
            spool.seek(0)
            await state.run(state.model_files.put, r, bucket, key, spool)
        return JSONResponse({})

    return await _artifact(who, work)


@router.get(ARTIFACTS + "/{path:path}")
async def download(path: str, request: Request, who: User, state: State) -> Response:
    async def work(r: Reader) -> Response:
        bucket, key = await state.run(_place, state, r, path, False)
        chunks = await state.run(state.model_files.get, r, bucket, key)
        return StreamingResponse(chunks, media_type="application/octet-stream")

    return await _artifact(who, work)


@router.get(ARTIFACTS)
async def list_artifacts(request: Request, who: User, state: State, path: str = "") -> Response:
    async def work(r: Reader) -> Response:
        if not path.strip("/"):
            return JSONResponse({"files": []})  # the root lists nothing: no one's ids are shown
        bucket, key = await state.run(_place, state, r, path, False)
        found = await state.run(state.model_files.list, r, bucket, key.rstrip("/") + "/")
        files = [
            {"path": f.path, "is_dir": f.is_dir, **({} if f.is_dir else {"file_size": f.size})}
            for f in found
        ]
        return JSONResponse({"files": files})

    return await _artifact(who, work)


@router.delete(ARTIFACTS + "/{path:path}")
async def delete_artifact(path: str, request: Request, who: User, state: State) -> Response:
    async def work(r: Reader) -> Response:
        bucket, key = await state.run(_place, state, r, path, True)
        await state.run(state.model_files.delete_tree, bucket, key)
        return JSONResponse({})

    return await _artifact(who, work)
