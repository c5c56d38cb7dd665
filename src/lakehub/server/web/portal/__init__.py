"""The portal: server-rendered pages behind JupyterHub's OAuth, and their form posts. Its pages
may use the API's helpers (``servers_of``, ``clusters_of``, ...); the API never imports it."""
