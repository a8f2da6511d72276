"""Flows: work that spans several domains (routing, presence, AI), called by the edges (the worker's jobs)."""
