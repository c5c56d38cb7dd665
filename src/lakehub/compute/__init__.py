"""Compute on demand: per-user Dask (dask-gateway) and Spark standalone clusters."""
