"""The server's engines for Dask and Spark clusters (the SDK's side is lakehub.compute)."""
