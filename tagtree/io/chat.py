"""Structured chat calls (tree refinement, LLM judge): messages + JSON schema -> parsed JSON object.

``OpenAIChatModel`` implements ``tagtree.protocols.ChatModel`` with the official ``openai`` client
against any OpenAI-compatible endpoint, asking for ``response_format`` json_schema (the only mode
small local models follow reliably) and retrying transport errors and unparseable answers.
"""

from __future__ import annotations

import os
import time
from typing import Any

import orjson

from tagtree.errors import TagtreeError
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
                      *, name: str = "result") -> dict[str, Any]:
        import openai

        fmt = {"type": "json_schema", "json_schema": {"name": name, "schema": schema,
                                                      "strict": True}}
        last: Exception | None = None
        for attempt in range(self.parse_retries + 1):
            try:
                resp = self.client.chat.completions.create(
                    model=self.model, messages=messages, response_format=fmt,
                    temperature=self.temperature, max_tokens=self.max_tokens)
            except openai.APIError as exc:  # the client already retried 429/5xx/timeouts
                raise TagtreeError(f"LLM endpoint failed: {exc}") from None
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


def make_chat_model(cfg) -> OpenAIChatModel:
    """The configured endpoint (``cfg`` is a ``tagtree.config.Config``); needs ``llm.base_url``
    or an OpenAI key, and ``llm.model``."""
    llm = cfg.llm
    return OpenAIChatModel(llm.base_url, llm.model or "", api_key_env=llm.api_key_env,
                           temperature=llm.temperature, timeout_s=llm.timeout_s,
                           max_retries=llm.max_retries)
