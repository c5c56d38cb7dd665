"""The control plane: metadata, the REST API and the portal, run as a JupyterHub service."""
