"""JupyterLab's settings in every user's server, as the server environment's ``overrides.json``
(``<env>/share/jupyter/lab/settings``, written when the environment is built; a person's own
changes still win): a LakeHub menu in JupyterLab's top bar that leads back to the portal and
publishes the open notebook (``lab_publish``), and no news or update checks (a hub may have no
internet, and asking for it only shows an error)."""

from __future__ import annotations

from typing import Any

PORTAL = "/services/lakehub/"

OVERRIDES: dict[str, Any] = {
    "@jupyterlab/mainmenu-extension:plugin": {
        "menus": [
            {
                "id": "jp-mainmenu-lakehub",
                "label": "LakeHub",
                "rank": 1000,
                "items": [
                    {
                        "command": "help:open",
                        "rank": 0,
                        "args": {"url": PORTAL, "text": "LakeHub portal", "newBrowserTab": True},
                    },
                    {
                        "command": "help:open",
                        "rank": 1,
                        "args": {
                            "url": PORTAL + "datasets",
                            "text": "Datasets",
                            "newBrowserTab": True,
                        },
                    },
                    {"type": "separator", "rank": 2},
                    {"command": "lakehub:publish", "rank": 3},  # @lakehub/publish's command
                ],
            }
        ]
    },
    "@jupyterlab/apputils-extension:notification": {"checkForUpdates": False, "fetchNews": "false"},
}
