"""Annotate stage, pure parts: parsing, validation, truncation, prompts, fingerprint, keyphrases."""

from __future__ import annotations

import asyncio
import hashlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tagtree.annotation import (
    OK,
    TagError,
    TagInput,
    approx_tokens,
    clean_tags,
    load_prompt,
    normalize_tag,
    parse_tags,
    tagger_fingerprint,
    tags_schema,
    truncate,
)
from tagtree.errors import TagtreeError
from tagtree.keyphrase import KeyphraseTagger, candidates


@pytest.mark.parametrize("content, expected", [
    ('{"tags": ["binary search", "python"]}', ["binary search", "python"]),
    ('```json\n{"tags": ["a b", "c d"]}\n```', ["a b", "c d"]),
    ('Sure! Here are the tags: {"tags": ["x y", "z w"]} Hope this helps.', ["x y", "z w"]),
    ("{'tags': ['single quotes', 'python',]}", ["single quotes", "python"]),
    ('["bare list", "of tags"]', ["bare list", "of tags"]),
    ('{"keywords": ["other key", "works"]}', ["other key", "works"]),
    ('{"tags": ["truncated answer", "second tag", "thi', ["truncated answer", "second tag"]),
])
def test_parse_tags_tolerates_common_answer_shapes(content, expected):
    assert parse_tags(content) == expected


@pytest.mark.parametrize("content, reason", [
    ("", "empty response"), ("   ", "empty response"), (None, "empty response"),
    ("I cannot help with that.", "no tag list"), ('{"answer": 42}', "no tag list"),
])
def test_parse_tags_reports_a_reason(content, reason):
    with pytest.raises(TagError, match=reason):
        parse_tags(content)


def test_clean_tags_normalizes_dedupes_and_bounds():
    raw = ["  Binary   Search ", "binary search", "PYTHON_lists", "", 7, None, "x",
           "a" * 80, "one two three four five six seven eight nine", '"Recursion."', "- bullet"]
    assert clean_tags(raw, 2, 12) == ["binary search", "python lists", "recursion", "bullet"]
    assert clean_tags(raw, 2, 2) == ["binary search", "python lists"]
    with pytest.raises(TagError, match="too few valid tags: 1 < 2"):
        clean_tags(["ok tag", "", 3], 2, 12)


@given(st.lists(st.text(max_size=80), max_size=30))
def test_clean_tags_invariants(raw):
    try:
        tags = clean_tags(raw, 1, 12)
    except TagError:
        return
    assert 1 <= len(tags) <= 12 and len(set(tags)) == len(tags)
    for tag in tags:
        assert tag == normalize_tag(tag) and tag == tag.lower() and 2 <= len(tag) <= 64
        assert "  " not in tag


def test_schema_has_object_root_and_bounds():
    schema = tags_schema(2, 12)
    assert schema["type"] == "object" and schema["required"] == ["tags"]
    assert schema["properties"]["tags"]["minItems"] == 2
    assert schema["properties"]["tags"]["maxItems"] == 12


def test_truncate_keeps_instruction_and_response_head_and_tail():
    item = TagInput("i", "Sort this list. " * 5, "HEAD " + "middle " * 2000 + " TAIL")
    short, cut = truncate(item, 256)
    assert cut and short.instruction == item.instruction
    assert short.response.startswith("HEAD") and short.response.endswith("TAIL")
    assert "[...]" in short.response
    total = approx_tokens(short.instruction) + approx_tokens(short.response)
    assert total <= 256 + 4  # within rounding of the mark


def test_truncate_cuts_a_huge_instruction_too_and_leaves_short_inputs_alone():
    item = TagInput("i", "word " * 5000, "answer " * 100, "sys " * 10)
    short, cut = truncate(item, 200)
    assert cut and len(short.instruction) < len(item.instruction)
    assert approx_tokens(short.system + short.instruction + short.response) <= 210
    small = TagInput("j", "hi there", "hello")
    assert truncate(small, 200) == (small, False)


def test_truncate_uses_the_given_token_counter():
    words = lambda s: len(s.split())  # noqa: E731
    item = TagInput("i", "a b c", " ".join(f"w{i}" for i in range(100)))
    short, cut = truncate(item, 23, words)
    assert cut and words(short.response) <= 21  # 20 words + the mark


def test_prompts_render_without_examples_and_with_braces_in_text():
    prompt = load_prompt("tag", "v1")
    messages = prompt.render(instruction="Fix {this} dict: {'a': 1}", response="{}", system="",
                             min_tags=2, max_tags=12)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "{this}" in messages[1]["content"] and "{'a': 1}" in messages[1]["content"]
    assert "2 to 12" in messages[0]["content"]
    assert "e.g." not in messages[0]["content"].lower()  # the 135M model copies examples
    for name in ("critic", "revise"):
        assert load_prompt(name, "v1").sha
    with pytest.raises(TagtreeError, match="tag_v999"):
        load_prompt("tag", "v999")


def test_fingerprint_changes_with_every_parameter():
    base = tagger_fingerprint("llm", "m", {"prompt": "v1", "temperature": 0.0})
    assert base == tagger_fingerprint("llm", "m", {"temperature": 0.0, "prompt": "v1"})
    assert base.startswith("llm:m:")
    assert base != tagger_fingerprint("llm", "m2", {"prompt": "v1", "temperature": 0.0})
    assert base != tagger_fingerprint("llm", "m", {"prompt": "v2", "temperature": 0.0})
    assert base != tagger_fingerprint("llm", "m", {"prompt": "v1", "temperature": 0.2})


# -- keyphrase tagger ---------------------------------------------------------------------------
class HashEmbedder:
    """Deterministic bag-of-words vectors: texts sharing words point the same way."""

    fingerprint = "hash-bow@1"
    dim = 64

    def __init__(self):
        self.calls = 0

    def embed(self, texts):
        self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().split():
                h = int(hashlib.md5(word.encode()).hexdigest(), 16)
                out[i, h % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-9)


def test_candidates_split_at_stopwords_and_punctuation():
    cands = candidates("Write a Python function that sorts a linked list, using merge sort.")
    assert "python function" in cands and "linked list" in cands and "merge sort" in cands
    assert all(c not in ("write", "that", "a", "using") for c in cands)
    assert "function sorts linked" not in cands  # never across a stopword


def run_stream(tagger, items):
    async def collect():
        return [r async for r in tagger.tag_stream(items)]

    return asyncio.run(collect())


def test_keyphrase_tagger_tags_from_the_instance_words():
    tagger = KeyphraseTagger(HashEmbedder(), chunk=2)
    items = [TagInput(f"id{i}", text, "Use recursion and a base case.") for i, text in enumerate([
        "Explain binary search trees in Java with insertion and deletion examples.",
        "Compose a formal email declining a job offer politely.",
        "Compute the derivative of x squared times sine x."])]
    results = run_stream(tagger, items)
    assert [r.instance_id for r in results] == ["id0", "id1", "id2"]
    for result, item in zip(results, items, strict=True):
        assert result.status == OK and 2 <= len(result.tags) <= 12
        text = (item.instruction + " " + item.response).lower()
        assert all(all(w in text for w in tag.split()) for tag in result.tags)
        assert len(set(result.tags)) == len(result.tags)
    assert "formal email" in results[1].tags or "job offer" in results[1].tags
    assert tagger.fingerprint.startswith("keyphrase:hash-bow@1:")


def test_keyphrase_tagger_fails_with_reason_on_too_little_text_and_caches_phrases():
    emb = HashEmbedder()
    tagger = KeyphraseTagger(emb, chunk=64)
    (result,) = run_stream(tagger, [TagInput("x", "Hi!", "")])
    assert result.status == "failed" and "too few candidate phrases" in result.error
    # one content word is one tag, not a failure: the row still reaches the tree
    (short,) = run_stream(tagger, [TagInput("q", "Find the quotient of -40 / (-8).", "5")])
    assert short.status == "ok" and short.tags == ["quotient"]
    run_stream(tagger, [TagInput("a", "graph coloring heuristics", "")])
    cached = len(tagger._phrase_vecs)
    run_stream(tagger, [TagInput("b", "graph coloring heuristics", "")])
    assert len(tagger._phrase_vecs) == cached > 0


def test_keyphrase_tag_count_grows_with_text_within_bounds():
    tagger = KeyphraseTagger(HashEmbedder(), min_tags=2, max_tags=12)
    assert tagger.n_tags(1) == 2 and tagger.n_tags(16) == 4 and tagger.n_tags(10_000) == 12
