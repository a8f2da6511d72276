"""CORS on the REST API: only the origins of OPERATOR_CORS_ORIGINS, only under /api/v1, never credentials."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from service.settings import Settings
from tests.conftest import run_api
from tests.factories import bearer, make_operator, personal_token

APP = "https://app.example"
PREFLIGHT = {
    "Access-Control-Request-Method": "GET",
    "Access-Control-Request-Headers": "authorization, if-none-match",
}


async def test_preflight_from_an_allowed_origin_allows_the_bearer_token(settings: Settings) -> None:
    configured = settings.model_copy(update={"operator_cors_origins": [APP]})
    async with run_api(configured) as api, api.client() as http:
        response = await http.options("/api/v1/conversations", headers={"Origin": APP, **PREFLIGHT})
        assert response.status_code == 204
        assert response.headers["access-control-allow-origin"] == APP
        assert response.headers["access-control-allow-headers"] == (
            "Authorization, Content-Type, Idempotency-Key, If-None-Match"
        )
        assert response.headers["access-control-allow-methods"] == "GET, POST, PUT, PATCH, DELETE"
        assert response.headers["access-control-max-age"] == "600"
        assert response.headers["vary"] == "Origin"
        assert "access-control-allow-credentials" not in response.headers


async def test_an_allowed_origin_may_read_the_etag(settings: Settings, clean_db: AsyncEngine) -> None:
    configured = settings.model_copy(update={"operator_cors_origins": [APP]})
    operator = await make_operator(clean_db, "Ada", email="ada@example.test")
    headers = {"Origin": APP, **bearer(await personal_token(clean_db, operator))}
    async with run_api(configured) as api, api.client() as http:
        response = await http.get("/api/v1/conversations", headers=headers)
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == APP
        assert response.headers["access-control-expose-headers"] == "ETag, Idempotent-Replayed, WWW-Authenticate"
        assert "access-control-allow-credentials" not in response.headers


async def test_other_origins_and_other_paths_get_no_cors_headers(settings: Settings) -> None:
    configured = settings.model_copy(update={"operator_cors_origins": [APP]})
    async with run_api(configured) as api, api.client() as http:
        other = await http.options("/api/v1/conversations", headers={"Origin": "https://evil.example", **PREFLIGHT})
        assert not [name for name in other.headers if name.startswith("access-control-")]
        # The allowed origin gets nothing outside /api/v1 (the dashboard, the sign-in endpoints).
        outside = await http.get("/healthz", headers={"Origin": APP})
        assert not [name for name in outside.headers if name.startswith("access-control-")]


async def test_no_cors_on_the_api_by_default(settings: Settings) -> None:
    assert settings.operator_cors_origins == []
    async with run_api(settings) as api, api.client() as http:
        response = await http.options("/api/v1/conversations", headers={"Origin": APP, **PREFLIGHT})
        assert not [name for name in response.headers if name.startswith("access-control-")]
