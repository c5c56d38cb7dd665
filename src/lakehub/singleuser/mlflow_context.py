"""MLflow's run context provider for runs started in a LakeHub notebook server (registered as
the ``mlflow.run_context_provider`` entry point ``lakehub``): every run says which notebook
environment and which build of it it ran in, and which notebook, so a registered version's
lineage names them. MLflow asks it only when starting a run; it reads the environment alone."""

from __future__ import annotations

import os


class LakeHubRunContext:
    def in_context(self) -> bool:
        return bool(os.environ.get("LAKEHUB_ENVIRONMENT"))

    def tags(self) -> dict[str, str]:
        tags = {
            "lakehub.environment": os.environ.get("LAKEHUB_ENVIRONMENT", ""),
            "lakehub.environment.build": os.environ.get("LAKEHUB_ENVIRONMENT_BUILD", ""),
        }
        notebook = os.environ.get("JPY_SESSION_NAME")  # Jupyter Server names the kernel's notebook
        if notebook:
            tags["mlflow.source.name"] = notebook
            tags["mlflow.source.type"] = "NOTEBOOK"
        return tags
