"""Assistant providers: each turns a ProviderRequest into a stream of ProviderEvents."""

from __future__ import annotations

from agents.providers.base import Provider


def get_provider(name: str | None = None) -> Provider:
    """The configured provider (TENEX_LLM_PROVIDER): local, openai or anthropic."""
    from django.conf import settings

    name = name or settings.TENEX_LLM_PROVIDER
    if name == "local":
        from agents.providers.local import LocalProvider

        return LocalProvider()
    if name == "openai":
        from agents.providers.openai import OpenAIProvider

        return OpenAIProvider()
    if name == "anthropic":
        from agents.providers.anthropic import AnthropicProvider

        return AnthropicProvider()
    raise ValueError(f"unknown provider {name!r}")
