"""The server side of JupyterLab's "Publish Notebook as a Read-Only Page" command (the
``@lakehub/publish`` extension, built from ``labextension/``): ``POST <base_url>lakehub/publish``
with ``{"path": "reports/weekly.ipynb", "to": "hub"}`` publishes the notebook as it is saved, with
the SDK and the server's own token (so as its user), waits for its page and answers ``{"name",
"version", "path"}`` (the page's path on the hub); a refusal comes back with LakeHub's
reason as ``{"message"}``.

Enabled in every notebook environment by ``etc/jupyter/jupyter_server_config.d/lakehub.json``
(installed with the package)."""

from __future__ import annotations

import asyncio
import re
import tempfile
from pathlib import Path
from typing import Any

AUDIENCES = ("hub", "public", "private")


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "lakehub.singleuser.lab_publish"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from jupyter_server.base.handlers import APIHandler
    from jupyter_server.utils import ensure_async, url_path_join
    from tornado import web

    class PublishHandler(APIHandler):
        @web.authenticated
        async def post(self) -> None:
            body = self.get_json_body() or {}
            path, to = str(body.get("path") or ""), str(body.get("to") or "hub")
            if not path.endswith(".ipynb") or to not in AUDIENCES:
                self.set_status(400)
                self.finish({"message": f"publish a .ipynb notebook to one of {AUDIENCES}"})
                return
            try:
                manager: Any = self.contents_manager
                model = await ensure_async(manager.get(path, content=True, type="notebook"))
            except web.HTTPError as err:
                self.set_status(err.status_code)
                self.finish({"message": f"no notebook at {path}"})
                return
            status, answer = await asyncio.to_thread(_publish, path, model["content"], to)
            self.set_status(status)
            self.finish(answer)

    web_app = serverapp.web_app
    route = url_path_join(web_app.settings["base_url"], "lakehub", "publish")
    web_app.add_handlers(".*$", [(route, PublishHandler)])


def _publish(path: str, content: Any, to: str) -> tuple[int, dict[str, Any]]:
    from nbformat import writes

    import lakehub.publish
    from lakehub.client import API_PREFIX, LakeHubError

    stem = re.sub(r"[^a-z0-9-]+", "-", Path(path).stem.lower()).strip("-")[:63] or "notebook"
    with tempfile.TemporaryDirectory(prefix="lakehub-publish-") as tmp:
        file = Path(tmp) / f"{stem}.ipynb"
        file.write_text(writes(content))  # type: ignore[no-untyped-call]
        try:
            page = lakehub.publish.notebook(file, name=stem, to=to, wait=120)
        except LakeHubError as err:
            status = err.status if 400 <= err.status < 600 else 502
            return status, {"message": err.detail}
    version = page["versions"][0]["version"]
    # its path on the hub: the browser adds its own origin (the server knows only the API's)
    return 200, {"name": page["name"], "version": version, "path": f"{API_PREFIX}/{page['url']}"}
