"""Helpers shared by the tests: stand-in payloads, routing fixtures, OIDC tokens, SSE reading, worker processes."""
