"""The portal's home (your keys, servers, clusters, spaces), sign-up, and browsing the lake with
your own keys."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from lakehub.server.identity.users import UserError
from lakehub.server.web.api.compute import clusters_of
from lakehub.server.web.api.servers import servers_of
from lakehub.server.web.deps import Browser, State
from lakehub.server.web.portal.base import back, browse_page, lake_error, page, user_s3
from lakehub.server.web.signup_limit import client_address

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
async def home(
    request: Request, who: Browser, state: State, msg: str = "", error: str = ""
) -> Response:
    if who.local:
        return RedirectResponse(state.prefix + "admin", 303)
    creds = await state.run(state.directory.credentials, who.name)
    servers = await servers_of(state, who.name)
    clusters, compute_errors = await clusters_of(state, who.name)
    spaces = await state.run(state.spaces.visible, who.name, False)
    quotas = await state.run(state.quotas.visible, who.name, False)
    return page(
        request,
        "home.html",
        who=who,
        creds=creds,
        servers=servers,
        spaces=spaces,
        quotas=quotas,
        clusters=clusters,
        compute_errors=compute_errors,
        msg=msg,
        error=error,
    )


@router.post("/rotate")
async def rotate(who: Browser, state: State) -> Response:
    await state.run(state.directory.rotate, who.name, who.name)
    return back(
        state,
        "",
        msg="New lake key issued; the old one no longer works. Restart your server to pick it up.",
    )


@router.get("/signup", response_class=HTMLResponse)
async def signup_form(request: Request, state: State) -> Response:
    return page(request, "signup.html", who=None, auth=state.settings.auth)


@router.post("/signup", response_class=HTMLResponse)
async def signup(
    request: Request,
    state: State,
    name: Annotated[str, Form()],
    password: Annotated[str, Form()],
    confirm: Annotated[str, Form()] = "",
) -> Response:
    if state.settings.auth != "local":
        return page(request, "signup.html", who=None, auth=state.settings.auth)
    if confirm != password:  # checked before the limit: a typo is not a request
        return page(
            request,
            "signup.html",
            who=None,
            auth="local",
            error="The two passwords differ: type the same password twice.",
            name=name,
            status=400,
        )
    refused = request.app.state.signup_limit.check(client_address(request))
    if refused:  # the form comes back as typed, but for the password
        return page(
            request, "signup.html", who=None, auth="local", error=refused, name=name, status=429
        )
    try:
        await state.run(
            lambda: state.directory.create(name, actor=name, password=password, status="pending")
        )
    except UserError as err:
        return page(
            request,
            "signup.html",
            who=None,
            auth="local",
            error=str(err),
            name=name,
            status=err.status if err.status != 404 else 400,
        )
    return page(request, "signup.html", who=None, auth="local", done=True, name=name)


# browsing the lake, with the user's own keys -------------------------------------------------
@router.get("/browse", response_class=HTMLResponse)
async def browse_buckets(request: Request, who: Browser, state: State) -> Response:
    s3 = await user_s3(state, who)
    buckets = await state.run(lambda: [b["Name"] for b in s3.list_buckets()["Buckets"]])
    spaces = await state.run(state.spaces.visible, who.name, False)
    names = sorted(set(buckets) | {sp.bucket for sp in spaces})
    return page(request, "browse.html", who=who, buckets=names, listing=None)


@router.get("/browse/{bucket}", response_class=HTMLResponse)
async def browse(
    request: Request,
    bucket: str,
    who: Browser,
    state: State,
    prefix: str = "",
    key: str = "",
    msg: str = "",
    error: str = "",
) -> Response:
    from botocore.exceptions import ClientError

    s3 = await user_s3(state, who)
    try:  # the lake's own files may be catalogued (a connection's are not in the lake)
        return await browse_page(
            request, state, s3, bucket, prefix, key, who=who, msg=msg, error=error, registrable=True
        )
    except ClientError as err:
        status, reason = lake_error(err)
        return page(
            request, "browse.html", who=who, buckets=[], listing=None, error=reason, status=status
        )


@router.post("/browse/{bucket}/delete")
async def browse_delete(
    bucket: str, who: Browser, state: State, key: Annotated[str, Form()]
) -> Response:
    from botocore.exceptions import ClientError

    s3 = await user_s3(state, who)
    parent = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
    try:
        await state.run(lambda: s3.delete_object(Bucket=bucket, Key=key))
        state.quotas.poke()  # a quota it brought back under is lifted at once
    except ClientError as err:
        return back(
            state, f"browse/{bucket}?" + urlencode({"prefix": parent}), error=lake_error(err)[1]
        )
    return back(state, f"browse/{bucket}?" + urlencode({"prefix": parent}), msg=f"deleted {key}")
