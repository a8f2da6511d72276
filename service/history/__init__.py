"""Read-only history: the audit log (admins) and a team's assignment history (its leads)."""
