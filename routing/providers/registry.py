"""Which adapter speaks for which provider kind."""

from __future__ import annotations

from django.utils.module_loading import import_string

from routing.providers.base import ProviderAdapter
from routing.providers.types import ModelConfig

_ADAPTERS = {
    "openai": "routing.providers.openai_compat.OpenAICompatAdapter",
    "anthropic": "routing.providers.anthropic.AnthropicAdapter",
    "gemini": "routing.providers.gemini.GeminiAdapter",
    "ollama": "routing.providers.ollama.OllamaAdapter",
    "simulated": "routing.providers.simulated.SimulatedAdapter",
}


def adapter_for(config: ModelConfig) -> ProviderAdapter:
    adapter_class: type[ProviderAdapter] = import_string(_ADAPTERS[config.provider_kind])
    return adapter_class(config)
