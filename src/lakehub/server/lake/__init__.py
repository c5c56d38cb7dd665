"""The data lake: an S3 endpoint with one identity per user (see
:mod:`lakehub.server.lake.base`)."""
