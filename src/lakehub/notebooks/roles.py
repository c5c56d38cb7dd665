"""JupyterHub's scopes for administrators and for the control plane.

Rules: an administrator manages users, never becomes one. JupyterHub's default ``admin`` role
can do anything (mint any user's token, open any server, share it, read auth state, add proxy
routes, start a server with chosen options); LakeHub replaces its scopes with
:data:`ADMIN_SCOPES`, which read and stop but never enter. Everything that changes JupyterHub's
users goes through the control plane (the portal, the API, the CLI), whose service alone holds
:data:`CONTROL_SCOPES`.
"""

from __future__ import annotations

ADMIN_SCOPES = [
    "admin-ui",  # JupyterHub's admin page, read-only in practice
    "list:users", "read:users",  # names, groups, activity (never auth state)
    "read:servers",  # which servers run, since when (never their state)
    "delete:servers",  # stop a server (it frees resources and enters nothing)
    "list:groups", "read:groups",
    "list:services", "read:services",
    "read:hub", "read:roles", "read:metrics",
    "access:services",  # each service judges the request as the admin's own
]  # fmt: skip

CONTROL_SCOPES = [
    "admin:users",  # create, update (admin flag), delete hub users
    "tokens",  # a user's own token, asked for by that user or the local administrator
    "servers",  # start (after LakeHub's quota check) and stop servers
    "read:metrics",
]
