"""JupyterHub's scopes for LakeHub's administrators and for the control plane.

Rules: an administrator manages users, never becomes one. JupyterHub's built-in ``admin`` role
can do anything (mint any user's token, open or share any server, read auth state, add proxy
routes, start a server with chosen options) and its scopes cannot be changed, so nobody holds
it. LakeHub's administrators get :data:`ADMIN_ROLE` instead: they read users, groups and
servers and may stop a server, never enter one. The listed administrators (``admin_user``,
``ldap_admin_users``, ``oauth_admin_users``) hold it from the hub's start; those made
administrators later are members of :data:`ADMIN_GROUP`, kept by the control plane. Everything
that changes JupyterHub's users goes through the control plane (portal, API, CLI), whose
service alone holds :data:`CONTROL_SCOPES`.
"""

from __future__ import annotations

ADMIN_ROLE = "lakehub-admin"
ADMIN_GROUP = "lakehub-admins"

ADMIN_SCOPES = [
    "admin-ui",  # JupyterHub's admin page, read-only in practice
    "list:users",
    "read:users",  # names, groups, activity (never auth state)
    "read:servers",  # which servers run, since when (never their state)
    "delete:servers",  # stop a server (it frees resources and enters nothing)
    "list:groups",
    "read:groups",
    "list:services",
    "read:services",
    "read:hub",
    "read:roles",
    "read:metrics",
    "access:services",  # each service judges the request as the admin's own
]

CONTROL_SCOPES = [
    "admin:users",  # create and delete hub users
    f"groups!group={ADMIN_GROUP}",  # who is in it
    "tokens",  # a user's own token, asked for by that user or the local administrator
    "servers",  # start (after LakeHub's quota check) and stop servers
    "read:metrics",
]
