"""Who is calling: the ``Principal`` every operator endpoint receives, and the guards that check it."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Literal

from service.errors import Forbidden, NotFound

TOKEN_PREFIX = "sbp_"
# What a token may be limited to: reading, changing, and administration (operators, all teams).
TOKEN_SCOPES = ("read", "write", "admin")
# A personal access token may also carry ``scim``: the identity provider's provisioning (``/scim/v2``,
# docs/scim.md). Native apps never get it. Both are for admins only.
SCIM_SCOPE = "scim"
ADMIN_ONLY_SCOPES = ("admin", SCIM_SCOPE)


class CredentialRefused(Exception):
    """A bearer token was refused; the message says why (safe to show: 'expired: ...', 'revoked: ...')."""


@dataclass(frozen=True)
class Principal:
    """An authenticated operator, with the teams they belong to and what the credential allows."""

    operator_id: uuid.UUID
    display_name: str
    is_admin: bool
    # team id -> "lead" | "operator"
    teams: dict[uuid.UUID, str] = field(default_factory=dict)
    via: Literal["session", "jwt", "token", "oauth", "bridge", "cli"] = "session"
    # A token's scopes (personal access token, native app); None means everything the operator may do (session, JWT).
    scopes: frozenset[str] | None = None
    # Whether the client's network may administer (``ADMIN_ALLOWED_CIDRS``); False turns admin powers off.
    admin_network: bool = True

    def is_member(self, team_id: uuid.UUID | None) -> bool:
        """Admins see every team; others only their own."""
        return self.is_admin or (team_id is not None and team_id in self.teams)

    def is_lead(self, team_id: uuid.UUID | None) -> bool:
        """The team's leads; admins lead every team, but only from an allowed network."""
        return self.leads(team_id) or (self.is_admin and self.admin_network)

    def leads(self, team_id: uuid.UUID | None) -> bool:
        """A lead of this team in their own right (not through administration)."""
        return team_id is not None and self.teams.get(team_id) == "lead"

    def allows(self, scope: str) -> bool:
        return self.scopes is None or scope in self.scopes


def requires_team_member(principal: Principal, team_id: uuid.UUID | None, what: str = "Conversation") -> None:
    """Another team's object does not exist for the caller: 404, not 403, so ids cannot be probed."""
    if not principal.is_member(team_id):
        raise NotFound(f"{what} not found")


ADMIN_NETWORK_REFUSED = "Administration is not allowed from this network"


def requires_admin_network(principal: Principal) -> None:
    """The one network check: every admin-only decision goes through here (``ADMIN_ALLOWED_CIDRS``)."""
    if not principal.admin_network:
        raise Forbidden(ADMIN_NETWORK_REFUSED)


def requires_lead(principal: Principal, team_id: uuid.UUID) -> None:
    """Team configuration: leads of that team and admins; members who are not leads get 403.

    A lead of the team passes from anywhere; an admin who does not lead it acts as an admin,
    so only from an allowed network.
    """
    requires_team_member(principal, team_id, "Team")
    if principal.leads(team_id):
        return
    if not principal.is_admin:
        raise Forbidden("Only the team's leads may do this")
    requires_admin_network(principal)


def requires_lead_somewhere(principal: Principal, refusal: str) -> None:
    """Leads of some team pass from anywhere; an admin who leads none acts as an admin (allowed networks only)."""
    if "lead" in principal.teams.values():
        return
    if not principal.is_admin:
        raise Forbidden(refusal)
    requires_admin_network(principal)


def requires_admin(principal: Principal) -> None:
    """Administrators only, and only from an allowed network."""
    if not principal.is_admin:
        raise Forbidden("Only administrators may do this")
    requires_admin_network(principal)


def requires_scope(principal: Principal, scope: str) -> None:
    """A personal access token acts only within its scopes."""
    if not principal.allows(scope):
        raise Forbidden(f"This token lacks the '{scope}' scope")


def new_personal_token() -> tuple[str, str, str]:
    """A fresh token: (the secret shown once, its SHA-256 hex stored at rest, a display prefix)."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return secret, hash_token(secret), secret[:12]


def hash_token(secret: str) -> str:
    """Tokens are 256-bit random, so a plain SHA-256 is enough (no password-style stretching needed)."""
    return hashlib.sha256(secret.encode()).hexdigest()
