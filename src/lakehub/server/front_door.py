"""The front door: Traefik, every request of a browser or a client through it.

Traefik is started and watched by the supervisor (``lakehub up``). Its routes are a file that
JupyterHub keeps (``jupyterhub-traefik-proxy``'s file provider, ``proxy_class = "traefik_file"``):
Traefik reloads it when it changes, so a restarted Traefik comes back with every route, and a
restarted hub finds them. JupyterHub reaches Traefik's API (to see its routes loaded) on
loopback only, with a password (``proxy.token``).

The static configuration is written by :func:`static_config`, as JSON, which Traefik reads as
YAML.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lakehub.server.config import Settings

ENTRY = "http"  # the entry point's name jupyterhub-traefik-proxy gives its routes (plain HTTP)
API_ENTRY = "auth_api"  # ... and the one it reaches Traefik's API on
API_USER = "lakehub"
ERRORS = "lakehub-errors"  # the middleware of a notebook server's routes (and its service)
ENCODED = (  # encoded in a path and passed on as they are (a NUL is not: it names no file)
    "allowEncodedSlash",
    "allowEncodedBackSlash",
    "allowEncodedSemicolon",
    "allowEncodedPercent",
    "allowEncodedQuestionMark",
    "allowEncodedHash",
)


def routes_file(settings: Settings) -> Path:
    """In a folder of its own, which Traefik watches: JupyterHub replaces the file whole (a new
    file renamed over it), which a watch of the file itself would lose."""
    return settings.state_dir / "front-door" / "routes.toml"


def static_config(settings: Settings, api_port: int, hub_port: int) -> Path:
    """Traefik's static configuration for this hub, written; its path. The routes of an earlier
    run (other ports) are dropped: JupyterHub adds this run's as it starts."""
    routes = routes_file(settings)
    routes.parent.mkdir(mode=0o700, exist_ok=True)
    routes.unlink(missing_ok=True)
    (routes.parent / "errors.yaml").write_text(json.dumps(errors(hub_port)))
    path = settings.state_dir / "traefik.yaml"
    path.write_text(json.dumps(traefik(settings.host, settings.port, api_port, routes.parent)))
    return path


def traefik(host: str, port: int, api_port: int, routes: Path) -> dict[str, Any]:
    """Traefik's static configuration: the front door on ``host:port``, its API (and ping) on
    loopback at ``api_port``, the routes in the folder ``routes``."""
    bind = f"[{host}]" if ":" in host else host
    return {
        "global": {"checkNewVersion": False, "sendAnonymousUsage": False},  # no calls out
        "log": {"level": "ERROR"},
        "entryPoints": {
            ENTRY: {
                "address": f"{bind}:{port}",
                # a slow upload or a long download is never cut (Traefik's default: 60 s)
                "transport": {"respondingTimeouts": {"readTimeout": "0s"}},
                # a file named "50%.ipynb" or "a?b" reaches its server (which judges the path),
                # whatever Traefik's default of the day
                "http": {"encodedCharacters": {k: True for k in ENCODED}},
            },
            API_ENTRY: {"address": f"127.0.0.1:{api_port}"},
        },
        "api": {},
        "ping": {"entryPoint": API_ENTRY},  # the supervisor's health check, no password
        # the metrics store's page (loopback): requests by entry point, never by route (a
        # route names a user)
        "metrics": {"prometheus": {"entryPoint": API_ENTRY, "addServicesLabels": False}},
        "providers": {
            "providersThrottleDuration": "0s",  # a new server's route applies at once
            "file": {"directory": str(routes), "watch": True},
        },
    }


def errors(hub_port: int) -> dict[str, Any]:
    """The middleware :data:`ERRORS` (in the routes' folder): a route's 502-504 answered with
    JupyterHub's page for a server that is down (``/hub/error/503``), in LakeHub's look; the
    status stays what it was."""
    return {
        "http": {
            "middlewares": {
                ERRORS: {
                    "errors": {
                        "status": ["502-504"],
                        "service": ERRORS,
                        "query": "/hub/error/503",
                    }
                }
            },
            "services": {
                ERRORS: {"loadBalancer": {"servers": [{"url": f"http://127.0.0.1:{hub_port}"}]}}
            },
        }
    }


def health_url(api_port: int) -> str:
    return f"http://127.0.0.1:{api_port}/ping"
