# JupyterHub configuration generated from LakeHub settings; run as `jupyterhub -f <this file>`
# by the supervisor, with LAKEHUB_DATA_DIR (and any LAKEHUB_* settings) in the environment.
import importlib
import os
import sys
from pathlib import Path

import bcrypt

from lakehub.server import front_door
from lakehub.server.config import load_settings
from lakehub.server.notebooks.authenticator import LakeHubAuthenticator
from lakehub.server.notebooks.roles import ADMIN_GROUP, ADMIN_ROLE, ADMIN_SCOPES, CONTROL_SCOPES
from lakehub.server.notebooks.spawn_api import checked
from lakehub.server.notebooks.spawner import LakeHubSpawner
from lakehub.server.runtime import load_runtime, tokens

c = get_config()  # type: ignore[name-defined]  # noqa: F821
settings = load_settings()
runtime = load_runtime(settings)
assert runtime is not None, "start JupyterHub through 'lakehub up'"
tok = tokens(settings)
p = runtime.ports

# The front door: Traefik, started and watched by the supervisor (lakehub.server.front_door);
# the hub keeps its routes in a file Traefik watches.
c.JupyterHub.bind_url = f"http://{settings.host}:{settings.port}/"
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{p['hub']}"
c.JupyterHub.proxy_class = "lakehub.server.notebooks.front_door_routes.FrontDoorRoutes"
c.TraefikFileProviderProxy.should_start = False
c.TraefikFileProviderProxy.traefik_api_url = f"http://127.0.0.1:{p['proxy_api']}"
c.TraefikFileProviderProxy.traefik_api_username = front_door.API_USER
c.TraefikFileProviderProxy.traefik_api_password = tok.proxy
# a random token on loopback: bcrypt's lowest cost is enough, and Traefik checks it on every call
# of the hub's (several per server started) in well under a millisecond
c.TraefikFileProviderProxy.traefik_api_hashed_password = bcrypt.hashpw(
    tok.proxy.encode(), bcrypt.gensalt(4)
).decode()
c.TraefikFileProviderProxy.dynamic_config_file = str(front_door.routes_file(settings))
c.JupyterHub.db_url = f"sqlite:///{settings.state_dir / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(settings.state_dir / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(settings.run_dir / "jupyterhub.pid")
# JupyterHub's pages in LakeHub's look: its templates extended, and the portal's navigation
c.JupyterHub.template_paths = [
    str(Path(__file__).parent / "templates"),
    str(Path(__file__).parent.parent / "web" / "look"),
]
c.JupyterHub.template_vars = {"portal": "/services/lakehub/"}
c.JupyterHub.default_url = "/services/lakehub/"
c.JupyterHub.cleanup_servers = True
c.JupyterHub.authenticate_prometheus = True

# The control plane, as an external service behind the proxy.
c.JupyterHub.services = [
    {
        "name": "lakehub",
        "url": f"http://127.0.0.1:{p['api']}",
        "api_token": tok.service,
        "oauth_redirect_uri": "/services/lakehub/oauth_callback",
        "oauth_no_confirm": True,
        "display": False,
    },
    {  # Dask clusters; JupyterHub tokens authenticate there, and browsers log in to
        # dashboards through OAuth (see lakehub.server.compute.dashboards)
        "name": "dask-gateway",
        "url": f"http://127.0.0.1:{p['gateway']}",
        "api_token": tok.gateway,
        "oauth_redirect_uri": "/services/dask-gateway/oauth_callback",
        "oauth_no_confirm": True,
        "display": False,
    },
    # the time-series store scrapes /hub/metrics with this token (lakehub.server.ops.scrape)
    {"name": "lakehub-metrics", "api_token": tok.metrics, "display": False},
]
ADMINS = {
    "local": [settings.admin_user],
    "ldap": settings.ldap_admin_users,
    "oauth": settings.oauth_admin_users,
}[settings.auth]
c.JupyterHub.load_roles = [
    # JupyterHub's own admin role can do anything (mint any user's token, open their server),
    # and its scopes cannot be changed: nobody holds it. Administrators manage users without
    # the power to become them (lakehub.server.notebooks.roles).
    {"name": "admin", "users": [], "services": []},
    {"name": ADMIN_ROLE, "scopes": ADMIN_SCOPES, "users": ADMINS, "groups": [ADMIN_GROUP]},
    {"name": "lakehub-control", "scopes": CONTROL_SCOPES, "services": ["lakehub"]},
    {"name": "lakehub-metrics", "scopes": ["read:metrics"], "services": ["lakehub-metrics"]},
    {
        "name": "user",
        "scopes": [
            "self",
            "access:services!service=lakehub",
            "access:services!service=dask-gateway",
        ],
    },
]
if settings.cull_idle_timeout:  # stops idle servers; users and their files stay
    c.JupyterHub.services.append(
        {
            "name": "idle-culler",
            "command": [
                sys.executable,
                "-m",
                "lakehub.server.notebooks.culling",
                f"--timeout={settings.cull_idle_timeout}",
                f"--cull-every={settings.cull_every}",
            ],
            # the hub id lets `lakehub down` sweep it like every other process of this hub
            # the hub's pid: the culler dies with this process (a restarted hub starts its own)
            "environment": {
                "LAKEHUB_DATA_DIR": str(settings.data_dir),
                "LAKEHUB_HUB_ID": str(settings.data_dir),
                "LAKEHUB_HUB_PID": str(os.getpid()),
            },
            "display": False,
        }
    )
    c.JupyterHub.load_roles.append(
        {
            "name": "idle-culler",
            "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
            "services": ["idle-culler"],
        }
    )

# Identity
if settings.auth == "local":
    c.JupyterHub.authenticator_class = LakeHubAuthenticator
    c.LakeHubAuthenticator.db_url = settings.database_url
elif settings.auth == "ldap":
    from urllib.parse import urlparse

    url = urlparse(settings.ldap_url or "")
    c.JupyterHub.authenticator_class = "ldapauthenticator.LDAPAuthenticator"
    c.LDAPAuthenticator.server_address = url.hostname
    c.LDAPAuthenticator.server_port = url.port or (636 if url.scheme == "ldaps" else 389)
    c.LDAPAuthenticator.tls_strategy = settings.ldap_tls
    c.LDAPAuthenticator.bind_dn_template = settings.ldap_bind_dn_template
    c.Authenticator.allow_all = True
else:
    c.JupyterHub.authenticator_class = "oauthenticator.generic.GenericOAuthenticator"
    c.GenericOAuthenticator.client_id = settings.oauth_client_id
    if settings.oauth_client_secret:
        c.GenericOAuthenticator.client_secret = settings.oauth_client_secret.get_secret_value()
    c.GenericOAuthenticator.authorize_url = settings.oauth_authorize_url
    c.GenericOAuthenticator.token_url = settings.oauth_token_url
    c.GenericOAuthenticator.userdata_url = settings.oauth_userdata_url
    c.GenericOAuthenticator.username_claim = settings.oauth_username_claim
    c.GenericOAuthenticator.oauth_callback_url = f"{runtime.front_url}/hub/oauth_callback"
    c.GenericOAuthenticator.scope = ["openid", "profile"]
    c.Authenticator.allow_all = True

# JupyterHub's server API checks a server's options before it stores them (see spawn_api)
_auth = c.JupyterHub.authenticator_class
if isinstance(_auth, str):
    _module, _, _name = _auth.rpartition(".")
    _auth = getattr(importlib.import_module(_module), _name)
c.JupyterHub.authenticator_class = checked(_auth)

# Notebooks
c.JupyterHub.spawner_class = LakeHubSpawner
c.LakeHubSpawner.isolated = settings.isolated
c.LakeHubSpawner.homes_dir = str(settings.homes_dir)
c.LakeHubSpawner.env_dir = str(settings.envs_dir / "default")
c.LakeHubSpawner.lakehub_api_url = runtime.api_url
c.LakeHubSpawner.lakehub_token = tok.service
c.LakeHubSpawner.hub_id = str(settings.data_dir)
c.LakeHubSpawner.warm_socket = str(settings.run_dir / "warm.sock") if settings.warm_start else ""
c.LakeHubSpawner.run_dir = str(settings.run_dir)
# several servers per user; how many is a LakeHub quota (checked by the control plane)
c.JupyterHub.allow_named_servers = True
c.JupyterHub.named_server_limit_per_user = 0
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 60
c.Spawner.http_timeout = 60
c.Spawner.server_token_scopes = [
    "users:activity!user",
    "access:servers!server",
    "access:services!service=lakehub",
    "access:services!service=dask-gateway",
]
