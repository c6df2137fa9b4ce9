"""Annotate stage (pure part): instances -> annotations; prompts, parsing, truncation, fingerprint.

Everything here is deterministic and free of I/O except reading the versioned prompt files that
ship inside the package. The concurrent OpenAI-compatible client lives in ``tagtree.io.llm``, the
store loop in ``tagtree.io.annotator``; the offline keyphrase tagger in ``tagtree.keyphrase``.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import math
import re
import reprlib
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from tagtree.normalize import tidy_tag
from tagtree.replies import json_candidates as _json_candidates
from tagtree.replies import loads_lenient as _loads

OK, FAILED = "ok", "failed"
# The name tagtree.keyphrase imports: the annotate-time tidy-up (tagtree.normalize owns both
# steps of tag normalisation; this is not the tree stage's folding, normalize.normalize_tag).
normalize_tag = tidy_tag
# Tags longer than this are sentences, not atomic concepts.
MAX_TAG_CHARS = 64
MAX_TAG_WORDS = 8
# Truncation: share of the response budget kept from its head (the rest from its tail).
RESPONSE_HEAD_SHARE = 2 / 3
# The instruction may use at most this share of the token budget before it is cut too.
INSTRUCTION_MAX_SHARE = 0.75
TRUNCATION_MARK = "\n[...]\n"


class TagError(ValueError):
    """Model output that is not a usable tag list; the message is the stored failure reason."""


@dataclass(frozen=True, slots=True)
class TagInput:
    instance_id: str
    instruction: str
    response: str = ""
    system: str = ""


@dataclass(slots=True)
class TagResult:
    instance_id: str
    status: str  # OK or FAILED
    tags: list[str] | None = None
    error: str | None = None
    attempts: int = 1
    prompt_tokens: int = 0
    completion_tokens: int = 0


@runtime_checkable
class Tagger(Protocol):
    """Instances -> atomic knowledge tags. Results come back in completion order, one per input;
    a tagger never raises for one bad instance (it yields a FAILED result with the reason) and
    raises ``TagtreeError`` only for faults that doom every instance (bad key, unknown model)."""

    fingerprint: str  # annotations are cached under it: model + prompt version + params

    def describe(self) -> dict[str, Any]: ...

    def tag_stream(self, items: Iterable[TagInput]) -> AsyncIterator[TagResult]: ...


# -- fingerprint ------------------------------------------------------------------------------
def tagger_fingerprint(kind: str, model: str, params: dict[str, Any]) -> str:
    """``kind:model:hash``; the hash covers every parameter that changes the tags (prompt text
    included), so changing any of them re-annotates instead of mixing old and new tags."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()
    return f"{kind}:{model}:{digest[:12]}"


# -- prompts ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Prompt:
    name: str
    version: str
    system: str
    user: str  # with {instruction}, {response}, {system}, {tags}, {critique}, {min_tags}, ...

    @property
    def sha(self) -> str:
        return hashlib.sha256((self.system + "\0" + self.user).encode()).hexdigest()[:12]

    def render(self, **values: Any) -> list[dict[str, str]]:
        # str.replace, not str.format: instance text is full of braces (code, JSON).
        def fill(template: str) -> str:
            return re.sub(r"\{(\w+)\}", lambda m: str(values.get(m.group(1), m.group(0))),
                          template)

        return [{"role": "system", "content": fill(self.system).strip()},
                {"role": "user", "content": fill(self.user).strip()}]


def load_prompt(name: str, version: str) -> Prompt:
    """``tagtree/prompts/<name>_<version>.md``: a ``# system`` and a ``# user`` section."""
    from tagtree.errors import TagtreeError

    resource = importlib.resources.files("tagtree") / "prompts" / f"{name}_{version}.md"
    if not resource.is_file():
        raise TagtreeError(f"prompt template {name}_{version}.md not found in tagtree/prompts/ "
                           "(check annotate.prompt_version)")
    text = resource.read_text(encoding="utf-8")
    parts = re.split(r"^# (system|user)\s*$", text, flags=re.MULTILINE)
    sections = dict(zip(parts[1::2], parts[2::2], strict=True))
    if set(sections) != {"system", "user"}:
        raise TagtreeError(f"prompt {name}_{version}.md needs a '# system' and a '# user' section")
    return Prompt(name, version, sections["system"].strip(), sections["user"].strip())


def tags_schema(min_tags: int, max_tags: int) -> dict[str, Any]:
    """JSON schema of the answer; an object root because structured-output APIs require one."""
    return {
        "type": "object",
        "properties": {"tags": {
            "type": "array", "minItems": min_tags, "maxItems": max_tags,
            "items": {"type": "string", "minLength": 2, "maxLength": MAX_TAG_CHARS}}},
        "required": ["tags"],
        "additionalProperties": False,
    }


CRITIQUE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}, "critique": {"type": "string", "maxLength": 600}},
    "required": ["ok", "critique"],
    "additionalProperties": False,
}


# -- truncation -------------------------------------------------------------------------------
def approx_tokens(text: str) -> int:
    """Fallback token count (~4 characters per token for English BPE vocabularies)."""
    return math.ceil(len(text) / 4)


def _keep_chars(text: str, tokens: int, count: Callable[[str], int], cut) -> str:
    """Cut proportionally by characters, then shrink until ``count`` agrees (token density
    varies along a text, e.g. code vs prose)."""
    n = count(text)
    if n <= tokens:
        return text
    keep = int(len(text) * tokens / n)
    while keep > 0 and count(cut(text, keep)) > tokens:
        keep = int(keep * 0.9)
    return cut(text, keep) if keep > 0 else ""


def _head(text: str, tokens: int, count: Callable[[str], int]) -> str:
    return _keep_chars(text, tokens, count, lambda t, k: t[:k])


def _tail(text: str, tokens: int, count: Callable[[str], int]) -> str:
    return _keep_chars(text, tokens, count, lambda t, k: t[len(t) - k:])


PRECUT_CHARS_PER_TOKEN = 16  # far above English's ~4: the cut below never decides the outcome


def _precut(item: TagInput, chars: int) -> TagInput:
    """Each field cut to ``chars`` (the response to its head and tail, ``chars`` each) before
    any token is counted: counting a 52 MB instruction held the event loop for 112 s, and the
    budget keeps far less than this of any field anyway."""
    response = item.response
    if len(response) > 2 * chars:
        response = response[:chars] + TRUNCATION_MARK + response[-chars:]
    if len(item.system) <= chars and len(item.instruction) <= chars and response is item.response:
        return item
    return TagInput(item.instance_id, item.instruction[:chars], response, item.system[:chars])


def truncate(item: TagInput, max_tokens: int,
             count: Callable[[str], int] = approx_tokens) -> tuple[TagInput, bool]:
    """Fit system + instruction + response in ``max_tokens`` (counted with ``count``).

    Policy (a reconstruction; the paper does not say): the instruction is what the tags describe,
    so it is kept whole unless it alone exceeds 75% of the budget (then its head is kept); the
    response gets the rest, keeping its head (2/3: the approach) and its tail (1/3: the answer),
    joined by a ``[...]`` mark. The system prompt counts against the instruction's share.
    Returns the (possibly) shortened input and whether anything was cut.
    """
    if len(item.system) + len(item.instruction) + len(item.response) <= max_tokens:
        return item, False  # a token covers at least one character: no need to count
    item = _precut(item, max_tokens * PRECUT_CHARS_PER_TOKEN)
    sys_n, ins_n, res_n = count(item.system), count(item.instruction), count(item.response)
    if sys_n + ins_n + res_n <= max_tokens:
        return item, False
    system, instruction = item.system, item.instruction
    ins_budget = int(max_tokens * INSTRUCTION_MAX_SHARE)
    if sys_n + ins_n > ins_budget:
        system = _head(system, ins_budget // 4, count) if sys_n > ins_budget // 4 else system
        instruction = _head(instruction, ins_budget - count(system), count)
    left = max(0, max_tokens - count(system) - count(instruction))
    response = item.response
    if count(response) > left:
        head_n = int(left * RESPONSE_HEAD_SHARE)
        response = (_head(response, head_n, count) + TRUNCATION_MARK
                    + _tail(response, left - head_n, count)) if left else ""
    return TagInput(item.instance_id, instruction, response, system), True


# -- parsing and validation -------------------------------------------------------------------
_QUOTED = re.compile(r"\"([^\"\n]{1,200})\"|'([^'\n]{1,200})'")


_BRIEF = reprlib.Repr()  # keyword arguments only from Python 3.12
_BRIEF.maxlevel, _BRIEF.maxstring, _BRIEF.maxother = 3, 60, 60


def _brief(value: Any) -> str:
    """A bounded repr: a hostile answer nested deep or very long cannot blow up a message."""
    return _BRIEF.repr(value)


def _tag_list(value: Any) -> list | None:
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        for key in ("tags", "Tags", "TAGS", "knowledge_tags", "keywords"):
            if isinstance(value.get(key), list):
                return value[key]
        lists = [v for v in value.values() if isinstance(v, list)]
        if len(lists) == 1:
            return lists[0]
    return None


def parse_tags(content: str | None) -> list:
    """Pull the raw tag list out of a model's answer: a JSON object ``{"tags": [...]}`` or a bare
    list, possibly in a code fence, with text around it, or in single quotes. Raises TagError."""
    if content is None or not content.strip():
        raise TagError("empty response")
    for candidate in _json_candidates(content):
        tags = _tag_list(_loads(candidate))
        if tags is not None:
            return tags
    # Last resort: a "tags" key followed by quoted strings (a truncated JSON answer).
    m = re.search(r"[\"']tags[\"']\s*:\s*\[(.*)", content, re.DOTALL)
    if m:
        found = [a or b for a, b in _QUOTED.findall(m.group(1))]
        if found:
            return found
    raise TagError(f"no tag list in response: {content[:80]!r}")


def clean_tags(raw: list, min_tags: int, max_tags: int) -> list[str]:
    """Validate and normalize: strings only, length bounds, no empties or duplicates, at most
    ``max_tags`` kept (in the model's order); fewer than ``min_tags`` raises TagError."""
    out: list[str] = []
    for value in raw:
        if not isinstance(value, str):
            continue
        tag = tidy_tag(value)
        if len(tag) < 2 or len(tag) > MAX_TAG_CHARS or len(tag.split()) > MAX_TAG_WORDS:
            continue
        if tag not in out:
            out.append(tag)
    if len(out) < min_tags:
        raise TagError(f"too few valid tags: {len(out)} < {min_tags} (raw: {_brief(raw[:6])})")
    return out[:max_tags]


@dataclass
class TagStats:
    """Counts of one annotate run; ``requested == ok + failed``."""

    pending: int = 0
    cached: int = 0
    requested: int = 0
    ok: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    failures: dict[str, int] = field(default_factory=dict)

    def add(self, result: TagResult) -> None:
        self.requested += 1
        self.prompt_tokens += result.prompt_tokens
        self.completion_tokens += result.completion_tokens
        if result.status == OK:
            self.ok += 1
        else:
            self.failed += 1
            reason = (result.error or "unknown").split(":")[0][:60]
            self.failures[reason] = self.failures.get(reason, 0) + 1
