"""Structured chat calls (tree refinement, LLM judge): messages + JSON schema -> parsed JSON object.

``OpenAIChatModel`` implements ``tagtree.protocols.ChatModel`` with the official ``openai`` client
against any OpenAI-compatible endpoint, asking for ``response_format`` json_schema (the only mode
small local models follow reliably) and retrying transport errors and unparseable answers.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

import orjson

from tagtree.errors import EndpointError, TagtreeError
from tagtree.replies import json_object


def _parse_json_object(text: str) -> dict[str, Any]:
    """The JSON object in a reply (``tagtree.replies``: fences and chatter around it are fine)."""
    value = json_object(text)
    if value is None:
        raise ValueError("no JSON object in the reply")
    return value


class OpenAIChatModel:
    """One structured completion per call; usage is summed in ``prompt_tokens`` /
    ``completion_tokens``. ``parse_retries`` re-asks when the content is not valid JSON."""

    def __init__(self, base_url: str | None, model: str, *, api_key_env: str = "OPENAI_API_KEY",
                 temperature: float = 0.0, timeout_s: float = 60.0, max_retries: int = 6,
                 parse_retries: int = 2, max_tokens: int | None = 400):
        from openai import OpenAI

        if not model:
            raise TagtreeError("an LLM model name is needed (llm.model / TAGTREE_LLM_MODEL)")
        # Local servers need no key but the client insists on one: send a placeholder.
        self.client = OpenAI(base_url=base_url, api_key=os.environ.get(api_key_env) or "unused",
                             timeout=timeout_s, max_retries=max_retries)
        self.model = model
        self.temperature = temperature
        self.parse_retries = parse_retries
        self.max_tokens = max_tokens
        from tagtree.sanitize import public_url

        self.fingerprint = f"chat:{model}@{public_url(base_url) or 'api.openai.com'}:t{temperature}"
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def complete_json(self, messages: list[dict[str, str]], schema: dict[str, Any],
                      *, name: str = "result", temperature: float | None = None,
                      seed: int | None = None) -> dict[str, Any]:
        """``temperature`` / ``seed`` override the model's for this call (a retry that differs)."""
        import openai

        fmt = {"type": "json_schema", "json_schema": {"name": name, "schema": schema,
                                                      "strict": True}}
        extra = {} if seed is None else {"seed": seed}
        last: Exception | None = None
        for attempt in range(self.parse_retries + 1):
            try:
                resp = self.client.chat.completions.create(
                    model=self.model, messages=messages, response_format=fmt,
                    temperature=self.temperature if temperature is None else temperature,
                    max_tokens=self.max_tokens, **extra)
            except openai.APIError as exc:  # the client already retried 429/5xx/timeouts
                raise EndpointError(f"LLM endpoint failed: {exc}") from None
            if resp.usage is not None:
                self.prompt_tokens += resp.usage.prompt_tokens or 0
                self.completion_tokens += resp.usage.completion_tokens or 0
            try:
                return _parse_json_object(resp.choices[0].message.content or "")
            except (ValueError, orjson.JSONDecodeError, IndexError) as exc:
                last = exc
                time.sleep(0.05 * (attempt + 1))
        raise TagtreeError(f"LLM returned no valid JSON after {self.parse_retries + 1} tries: "
                           f"{last}")


@contextlib.contextmanager
def open_chat_model(cfg, *, parse_retries: int | None = None) -> Iterator[OpenAIChatModel]:
    """The configured endpoint, or with no ``llm.base_url`` the offline model on a local
    server for the duration (as ``annotate --tagger llm`` does)."""
    # An endpoint is configured: a base URL, or a model name with an API key (OpenAI itself).
    if cfg.llm.base_url or (cfg.llm.model and os.environ.get(cfg.llm.api_key_env)):
        model = make_chat_model(cfg)
        if parse_retries is not None:
            model.parse_retries = parse_retries
        yield model
        return
    from tagtree.io.local_llm import LocalLLMServer

    with LocalLLMServer() as server:
        # Nothing is billed locally and a shared CPU is slow: a long timeout, few retries.
        model = OpenAIChatModel(server.base_url, server.model, temperature=cfg.llm.temperature,
                                timeout_s=max(cfg.llm.timeout_s, 600.0), max_retries=2,
                                parse_retries=1 if parse_retries is None else parse_retries)
        # The port changes every start: the fingerprint (tree versions, name cache) must not.
        model.fingerprint = f"chat:{server.model}@local:t{model.temperature}"
        yield model


def make_chat_model(cfg) -> OpenAIChatModel:
    """The configured endpoint (``cfg`` is a ``tagtree.config.Config``); needs ``llm.base_url``
    or an OpenAI key, and ``llm.model``."""
    llm = cfg.llm
    return OpenAIChatModel(llm.base_url, llm.model or "", api_key_env=llm.api_key_env,
                           temperature=llm.temperature, timeout_s=llm.timeout_s,
                           max_retries=llm.max_retries)
