"""The JSON API (``/api/...``): one module per resource, for programs that send JupyterHub
tokens. It never imports the portal (an import-linter contract)."""
