"""Everything ``lakehub up`` runs: its settings, supervisor and vault, the metadata (``db/``),
the areas (``identity/``, ``lake/``, ``catalog``, ``notebooks/``, ``compute/``, ``ingest/``) and
the web layer (``web/``) that serves them. Areas never import the web layer."""
