"""Logic with one owner: JSON replies (tagtree.replies), retryable HTTP statuses
(tagtree.errors), tag tidy-up (tagtree.normalize); every caller agrees with it."""

from __future__ import annotations

import pytest

from tagtree import annotation, normalize
from tagtree.errors import retryable_status
from tagtree.io.chat import _parse_json_object
from tagtree.replies import json_object


@pytest.mark.parametrize("reply, expected", [
    ('{"name": "sql"}', {"name": "sql"}),
    ('Sure!\n```json\n{"name": "sql"}\n```\nHope it helps', {"name": "sql"}),
    ("{'name': 'sql',}", {"name": "sql"}),  # Python literal, trailing comma
    ('["a", "b"]', None), ("no json here", None), ("[" * 5000, None),
])
def test_one_reading_of_a_json_reply(reply, expected):
    assert json_object(reply) == expected
    if expected is None:
        with pytest.raises(ValueError):
            _parse_json_object(reply)
    else:
        assert _parse_json_object(reply) == expected


@pytest.mark.parametrize("status, retry", [
    (408, True), (409, True), (425, True), (429, True), (500, True), (502, True), (503, True),
    (504, True), (507, True), (400, False), (401, False), (403, False), (404, False),
    (422, False),
])
def test_llm_client_and_prefect_retries_agree_on_statuses(status, retry):
    import httpx
    import openai

    from tasks.policies import is_transient

    assert retryable_status(status) is retry
    response = httpx.Response(status, request=httpx.Request("POST", "http://127.0.0.1/v1"))
    error = openai.APIStatusError("x", response=response, body=None)
    assert is_transient(error) is retry


def test_the_tagger_tidy_up_is_normalize_tidy_tag_and_unchanged():
    assert annotation.normalize_tag is normalize.tidy_tag
    assert normalize.tidy_tag('  "Machine_Learning"; ') == "machine learning"
    assert normalize.tidy_tag("C#") == "c"  # the stored form strips '#' (folding keeps "c#")
    assert normalize.normalize_tag("C#") == "c#"
    assert normalize.tidy_tag("\x1b[2Jbad\u202etag") == "badtag"
