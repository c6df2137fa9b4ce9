"""Format detection and normalisation: every format, every quarantine reason, stable ids."""

import pytest

from tagtree.formats import (
    EMPTY_TEXT,
    MISSING_FIELD,
    NOT_AN_OBJECT,
    WRONG_TYPE,
    RecordError,
    content_id,
    detect_format,
    normalize_record,
)

SAME_CONVERSATION = {
    "alpaca": {"instruction": "Add 2 and 3.", "input": "", "output": "5"},
    "sharegpt": {
        "conversations": [{"from": "human", "value": "Add 2 and 3."}, {"from": "gpt", "value": "5"}]
    },
    "openai": {
        "messages": [
            {"role": "user", "content": "Add 2 and 3."},
            {"role": "assistant", "content": "5"},
        ]
    },
    "dolly": {"instruction": "Add 2 and 3.", "context": "", "response": "5"},
    "prompt_response": {"prompt": "Add 2 and 3.", "response": "5"},
}


@pytest.mark.parametrize("fmt", sorted(SAME_CONVERSATION))
def test_every_format_is_detected_and_normalised(fmt):
    record = SAME_CONVERSATION[fmt]
    assert detect_format(record) == fmt
    norm = normalize_record(record, fmt)
    assert norm.instruction == "Add 2 and 3."
    assert norm.response == "5"
    assert norm.turns == (("user", "Add 2 and 3."), ("assistant", "5"))


def test_same_content_in_any_format_has_one_id():
    ids = {normalize_record(r, f).id for f, r in SAME_CONVERSATION.items()}
    assert len(ids) == 1


def test_id_ignores_whitespace_and_unicode_form_but_not_content():
    a = content_id("", (("user", "Caf\u00e9  menu\n"),))
    b = content_id("", (("user", "Cafe\u0301 menu"),))
    c = content_id("", (("user", "Cafe menu"),))
    assert a == b
    assert a != c


def test_alpaca_input_joins_instruction():
    norm = normalize_record(
        {"instruction": "Translate.", "input": "bonjour", "output": "hello"}, "alpaca"
    )
    assert norm.instruction == "Translate.\n\nbonjour"


def test_sharegpt_system_and_multi_turn():
    rec = {
        "conversations": [
            {"from": "system", "value": "Be brief."},
            {"from": "human", "value": "Hi"},
            {"from": "gpt", "value": "Hello"},
            {"from": "human", "value": "Bye"},
            {"from": "gpt", "value": "Bye!"},
        ]
    }
    norm = normalize_record(rec, "sharegpt")
    assert norm.system == "Be brief."
    assert len(norm.turns) == 4
    assert norm.instruction == "Hi" and norm.response == "Hello"


def test_openai_content_parts_are_joined():
    rec = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Look"}]},
            {"role": "assistant", "content": "Ok"},
        ]
    }
    assert normalize_record(rec, "openai").instruction == "Look"


def test_turns_format_is_prompt_only():
    norm = normalize_record({"turns": ["Q1", "Q2"]}, "turns")
    assert norm.instruction == "Q1" and norm.response == ""


@pytest.mark.parametrize(
    ("record", "fmt", "reason", "field"),
    [
        ({"instruction": "x"}, "alpaca", MISSING_FIELD, "output"),
        ({"instruction": "  ", "output": "y"}, "alpaca", EMPTY_TEXT, "instruction"),
        ({"instruction": 3, "output": "y"}, "alpaca", WRONG_TYPE, "instruction"),
        ({"conversations": "nope"}, "sharegpt", WRONG_TYPE, "conversations"),
        (
            {"conversations": [{"from": "human"}]},
            "sharegpt",
            MISSING_FIELD,
            "conversations[0].value",
        ),
        (
            {"messages": [{"role": "alien", "content": "x"}]},
            "openai",
            WRONG_TYPE,
            "messages[0].role",
        ),
        ({"messages": [{"role": "assistant", "content": "x"}]}, "openai", EMPTY_TEXT, None),
        ({"turns": [1, 2]}, "turns", WRONG_TYPE, "turns"),
        (["a", "list"], "alpaca", NOT_AN_OBJECT, None),
    ],
)
def test_bad_records_name_reason_and_field(record, fmt, reason, field):
    with pytest.raises(RecordError) as info:
        normalize_record(record, fmt)
    assert info.value.reason == reason
    assert info.value.field == field


def test_unknown_keys_are_not_a_format():
    assert detect_format({"foo": 1}) is None
