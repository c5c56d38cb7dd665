"""Notebooks: JupyterHub configuration, the spawner, the authenticator, environments."""
