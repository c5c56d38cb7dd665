"""Notebooks published read-only: snapshots in the lake, rendered safe, shared by link."""
