"""Assistant providers: each turns a ProviderRequest into a stream of ProviderEvents."""

from __future__ import annotations

import asyncio
import threading
import weakref

from agents.providers.base import Provider, SDKStreamingProvider


def get_provider(name: str | None = None) -> Provider:
    """The configured provider (TENEX_LLM_PROVIDER): local, openai or anthropic."""
    from django.conf import settings

    name = name or settings.TENEX_LLM_PROVIDER
    if name == "local":
        from agents.providers.local import LocalProvider

        return LocalProvider()
    if name == "openai":
        from agents.providers.openai import OpenAIProvider

        return _shared(OpenAIProvider)
    if name == "anthropic":
        from agents.providers.anthropic import AnthropicProvider

        return _shared(AnthropicProvider)
    raise ValueError(f"unknown provider {name!r}")


# Per event loop, the SDK providers in use there by their configuration.
_providers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple, SDKStreamingProvider]] = (
    weakref.WeakKeyDictionary()
)
_providers_lock = threading.Lock()


def _shared(provider_class: type[SDKStreamingProvider]) -> SDKStreamingProvider:
    """One provider per event loop and configuration, so the replies of a loop share one SDK
    client: its connections stay open between replies, and a new client's TLS context alone costs
    tens of milliseconds of CPU. Called without a running loop: a provider of its own."""
    provider = provider_class()
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return provider
    configuration = (
        provider_class, provider.base_url, provider.api_key, provider.model, provider.timeout, provider.max_retries
    )
    with _providers_lock:
        return _providers.setdefault(loop, {}).setdefault(configuration, provider)
