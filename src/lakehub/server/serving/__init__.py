"""Serving: registered model versions as HTTP endpoints (the Open Inference Protocol v2)."""
