"""The front door's routes, as JupyterHub keeps them: ``jupyterhub-traefik-proxy``'s file
provider, with one addition. A notebook server's routes carry the middleware
:data:`lakehub.server.front_door.ERRORS`: a server that does not answer (it died, and JupyterHub
has not noticed yet) gets the hub's page in LakeHub's look, as JupyterHub's own proxy gave, not
Traefik's plain "Bad Gateway". Only those routes: the API's and the endpoints' own 502-504
answers are JSON for their clients and pass as they are.
"""

from __future__ import annotations

from typing import Any

from jupyterhub_traefik_proxy.fileprovider import TraefikFileProviderProxy

from lakehub.server.front_door import ERRORS


class FrontDoorRoutes(TraefikFileProviderProxy):
    def _dynamic_config_for_route(
        self, routespec: str, target: str, data: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        traefik, hub = super()._dynamic_config_for_route(routespec, target, data)
        if "user" in data:  # a notebook server's (JupyterHub's own data for the route)
            for router in traefik["http"]["routers"].values():
                router["middlewares"] = [f"{ERRORS}@file"]
        return traefik, hub
