"""Team-aware chat bridges: per-team PocketPing bridges, operator links, inbound webhooks and commands."""
