"""What the router reads from an OpenAI-style request, and the errors it answers with.

The router never rewrites a request: it reads the prompt (to count and hash its blocks) and ``max_tokens``, and
forwards the client's bytes as they came.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from warmroute.serve.prefix_index import affinity_key, block_hashes, prompt_units
from warmroute.serve.routing import RoutingRequest

GENERATE_PATHS = ("/v1/completions", "/v1/chat/completions")
DEFAULT_MAX_TOKENS = 16
"""OpenAI's default ``max_tokens`` for completions, used when a request does not say."""


def prompt_of(path: str, body: dict[str, Any]) -> list[int] | str:
    """The prompt a backend will prefill: token ids as given, or text (chat: the messages' roles and text parts)."""
    if path.endswith("/chat/completions"):
        parts = []
        for message in body.get("messages") or []:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, list):
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            parts.append(f"{message.get('role', '') if isinstance(message, dict) else ''}:{content or ''}\n")
        return "".join(parts)
    prompt = body.get("prompt", "")
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
        return prompt
    if isinstance(prompt, list):  # a batch: what it shares is its first prompt's prefix
        return prompt_of(path, {"prompt": prompt[0]}) if prompt else ""
    return str(prompt)


def routing_request(path: str, body: dict[str, Any], block_size: int) -> RoutingRequest:
    """The request as the router sees it: prompt tokens, block hashes, affinity key, requested decode length."""
    units, tokens = prompt_units(prompt_of(path, body))
    hashes = block_hashes(units, block_size)
    max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
    max_tokens = max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else DEFAULT_MAX_TOKENS
    return RoutingRequest(tokens, hashes, affinity_key(hashes, units), max_tokens)


def error_response(status: int, message: str, kind: str) -> web.Response:
    """An OpenAI-style JSON error: ``{"error": {"message", "type", "code"}}``."""
    return web.json_response({"error": {"message": message, "type": kind, "code": status}}, status=status)
