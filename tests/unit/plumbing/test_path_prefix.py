"""PATH_PREFIX: what it accepts, and the URLs built from it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.auth.sessions import cookie_path
from service.settings import Settings
from service.webhooks.delivery import with_links

BASE = {"database_url": "postgresql://postgres@127.0.0.1:5432/test", "redis_url": "redis://h", "secret_key": "k" * 40}


@pytest.mark.parametrize("bad", ["support", "/support/", "/sup port", "/support?x=1", "//support"])
def test_a_prefix_is_a_path_without_a_trailing_slash(bad: str) -> None:
    with pytest.raises(ValidationError, match="path_prefix"):
        Settings(**BASE, path_prefix=bad)


def test_urls_and_cookie_paths_start_with_the_prefix() -> None:
    settings = Settings(**BASE, public_url="https://shop.example/", path_prefix="/help/desk")
    assert settings.base_url == "https://shop.example/help/desk"
    assert settings.site_path("/app") == "/help/desk/app"
    assert settings.post_logout_redirect_uri == "https://shop.example/help/desk"
    assert (cookie_path(settings), cookie_path(settings, "/auth")) == ("/help/desk", "/help/desk/auth")
    alone = Settings(**BASE, public_url="https://support.example")
    assert (alone.base_url, alone.site_path("/app"), cookie_path(alone)) == ("https://support.example", "/app", "/")


def test_a_webhook_event_links_its_conversation_under_the_prefix() -> None:
    settings = Settings(**BASE, public_url="https://shop.example", path_prefix="/support")
    event = {"id": 7, "type": "conversation.closed", "conversationId": "18c2f0a9d41-4be1c2d3", "data": {}}
    sent = with_links(settings, event)
    assert sent["links"] == {"conversation": "https://shop.example/support/app/conversations/18c2f0a9d41-4be1c2d3"}
    assert sent | {"links": None} == event | {"links": None}  # nothing else changed
    test_delivery = {"id": None, "type": "webhook.test", "conversationId": None, "data": {}}
    assert with_links(settings, test_delivery) is test_delivery
