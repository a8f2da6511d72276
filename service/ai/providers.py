"""AI providers: PocketPing's OpenAI, Anthropic and Gemini providers, and a local deterministic one for development."""

from __future__ import annotations

from pocketping.ai.anthropic import AnthropicProvider
from pocketping.ai.base import AIProvider
from pocketping.ai.gemini import GeminiProvider
from pocketping.ai.openai import OpenAIProvider
from pocketping.models import Message, Sender

from service.settings import Settings

LOCAL_LABEL = "[Local development AI provider, not a real model]"


class LocalProvider(AIProvider):
    """Answers without any network: the same input always gives the same reply, which says where it comes from."""

    @property
    def name(self) -> str:
        return "local"

    async def generate_response(self, messages: list[Message], system_prompt: str | None = None) -> str:
        asked = next((m.content for m in reversed(messages) if m.sender == Sender.VISITOR), "")
        prompt = "with the team's instructions" if system_prompt else "without team instructions"
        return f'{LOCAL_LABEL} You wrote: "{asked}". I read {len(messages)} messages, {prompt}.'

    async def is_available(self) -> bool:
        return True


def build_provider(settings: Settings) -> AIProvider:
    """The provider ``AI_PROVIDER`` names, with ``AI_API_KEY``, ``AI_MODEL`` and ``AI_BASE_URL`` (the SDK's defaults
    if unset)."""
    if settings.ai_provider == "local":
        return LocalProvider()
    vendors: dict[str, type[OpenAIProvider | AnthropicProvider | GeminiProvider]] = {
        "openai": OpenAIProvider,
        "anthropic": AnthropicProvider,
        "gemini": GeminiProvider,
    }
    options = {"model": settings.ai_model} if settings.ai_model else {}
    if settings.ai_base_url:
        options["base_url"] = settings.ai_base_url
    assert settings.ai_api_key is not None  # the settings refuse a vendor without a key
    return vendors[settings.ai_provider](api_key=settings.ai_api_key, **options)
