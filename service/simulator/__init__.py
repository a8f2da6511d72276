"""The policy simulator: a team's past period replayed against a draft of its settings (docs/routing.md)."""
