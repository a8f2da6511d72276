"""Bearer personal access tokens resolve to the operator with their team roles, or 401/403."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.factories import add_member, bearer, make_operator, make_team, personal_token


async def test_personal_token_identifies_the_operator(http: httpx.AsyncClient, clean_db: AsyncEngine) -> None:
    operator = await make_operator(clean_db, "Ada")
    team = await make_team(clean_db, "Billing")
    await add_member(clean_db, team, operator, role="lead")
    token = await personal_token(clean_db, operator)

    response = await http.get("/api/v1/me", headers=bearer(token))

    assert response.status_code == 200
    assert response.json() == {
        "id": str(operator),
        "displayName": "Ada",
        "isAdmin": False,
        "teams": [{"teamId": str(team), "role": "lead"}],
    }


async def test_missing_revoked_expired_and_unknown_tokens_are_401(
    http: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    operator = await make_operator(clean_db)
    revoked = await personal_token(clean_db, operator, revoked_at=datetime.now(UTC))
    expired = await personal_token(clean_db, operator, expires_at=datetime.now(UTC) - timedelta(seconds=1))

    personal = "unknown, revoked or expired personal access token"
    malformed = (
        "malformed: not a Switchboard token (sba_, sbp_) nor a JWT; the identity provider's opaque access "
        "tokens are not accepted: sign in through /oauth/authorize"
    )
    cases = [
        ({}, None),
        (bearer(revoked), personal),
        (bearer(expired), personal),
        (bearer("sbp_unknown"), personal),
        (bearer("not-a-token"), malformed),
    ]
    for headers, reason in cases:
        response = await http.get("/api/v1/me", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["content-type"] == "application/problem+json"
        # RFC 6750 section 3: no error code when no credential came, invalid_token with the reason otherwise.
        expected = 'Bearer realm="switchboard"'
        if reason is not None:
            expected += f', error="invalid_token", error_description="{reason}"'
        assert response.headers["www-authenticate"] == expected
        assert response.json()["detail"] == (
            f"The bearer token was refused: {reason}" if reason else "Sign in or send a valid bearer token"
        )


async def test_token_without_read_scope_is_403(http: httpx.AsyncClient, clean_db: AsyncEngine) -> None:
    operator = await make_operator(clean_db)
    token = await personal_token(clean_db, operator, scopes=("write",))

    response = await http.get("/api/v1/me", headers=bearer(token))

    assert response.status_code == 403
    assert response.json()["detail"] == "This token lacks the 'read' scope"
