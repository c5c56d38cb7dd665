"""Stand-ins for what cannot run in-process in the fast test layer (see tests/inproc.py)."""
