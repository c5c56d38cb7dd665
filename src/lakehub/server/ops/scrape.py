"""What the store scrapes: one job per component that has a metrics page, from the hub's ports.

Every series gets the label ``component`` (the job's name) unless it has one (the control
plane's figures about the other components). Pages that need a token are read
with the metrics token (``state/metrics.token``, a file the store reads: the token is never in
the configuration itself). Components without a page of their own (the gateway, the warm
starter) are watched by the control plane's ``lakehub_component_up`` (:mod:`.figures`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lakehub.server.config import Settings
from lakehub.server.runtime import Runtime


def jobs(settings: Settings, rt: Runtime, lake_metrics: bool) -> list[dict[str, Any]]:
    p = rt.ports
    token_file = str(settings.state_dir / "metrics.token")
    pages: list[tuple[str, int, str, bool]] = [  # component, port, path, needs the token
        ("api", p["api"], "/services/lakehub/metrics", True),
        ("hub", p["hub"], "/hub/metrics", True),
        ("metrics", p["metrics"], "/metrics", False),
        ("proxy", p["proxy_api"], "/metrics", False),  # Traefik, the front door
    ]
    if lake_metrics:
        pages.append(("lake", p["lake_metrics"], "/metrics", False))
    if settings.ingest:
        pages.append(("ingest", p["ingest_http"], "/metrics", True))
    out = []
    for name, port, path, secret in pages:
        job: dict[str, Any] = {
            "job_name": name,
            "honor_labels": True,  # the control plane's own "component" labels stand
            "metrics_path": path,
            "static_configs": [{"targets": [f"127.0.0.1:{port}"], "labels": {"component": name}}],
            # the same series across restarts, which allocate new ports
            "relabel_configs": [{"target_label": "instance", "replacement": name}],
        }
        if secret:
            job["bearer_token_file"] = token_file
        out.append(job)
    return out


def write(path: Path, settings: Settings, rt: Runtime, lake_metrics: bool) -> Path:
    """The scrape configuration (JSON, which is YAML) at ``path``; returns it."""
    interval = settings.metrics_interval
    config = {
        "global": {"scrape_interval": f"{interval}s", "scrape_timeout": f"{min(interval, 10)}s"},
        "scrape_configs": jobs(settings, rt, lake_metrics),
    }
    path.write_text(json.dumps(config, indent=2))
    return path
