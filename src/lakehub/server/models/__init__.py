"""Experiments and models: MLflow's tracking and registry, LakeHub's identity and tenancy.

``tables`` holds the metadata, ``owners`` who may read or write what, ``tracking`` experiments,
runs and logged models, ``registry`` registered models, versions and aliases (with their
history), ``artifacts`` the files (in the owner's bucket of the lake). The web layer speaks
MLflow's REST API over these (``lakehub.server.web.api.mlflow``); nothing here imports it.
"""
