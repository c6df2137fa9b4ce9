"""Hostile-text helpers: credentials scrubbed from URLs and messages, terminal escapes removed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tagtree.sanitize import printable, public_url, scrub, scrub_text, strip_controls


@pytest.mark.parametrize("url, expected", [
    ("https://u:sk-secret@api.example.com:8443/v1?api-key=x", "https://api.example.com:8443/v1"),
    ("http://bob@localhost/v1", "http://localhost/v1"),
    ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
    ("http://[::1]:8000/v1", "http://[::1]:8000/v1"),
    ("http://u:p@[::1]:8000/v1", "http://[::1]:8000/v1"),
    (None, None), ("", ""),
])
def test_public_url(url, expected):
    assert public_url(url) == expected


def test_public_url_of_a_broken_url_still_drops_the_password():
    assert "pw" not in public_url("http://u:pw@host:notaport/v1")


def test_scrub_text_and_nested_structures():
    msg = "POST http://alice:s3cret@gw.example/v1/chat failed; retry http://h/v1?token=abc&x=1"
    out = scrub_text(msg)
    assert "s3cret" not in out and "alice" not in out and "abc" not in out
    assert "http://***@gw.example/v1/chat" in out and "x=1" in out
    cfg = {"llm": {"base_url": "http://u:pw@h/v1", "model": "m"}, "list": ["https://a:b@c/"],
           "n": 3, "none": None}
    assert scrub(cfg) == {"llm": {"base_url": "http://***@h/v1", "model": "m"},
                          "list": ["https://***@c/"], "n": 3, "none": None}


# A password in a URL holds no whitespace, '/', '@', '?' or '#' (those must be %-encoded).
@given(st.text(alphabet=st.characters(blacklist_categories=("Zs", "Zl", "Zp", "Cc", "Cs"),
                                      blacklist_characters="/@?#'\""), min_size=1))
def test_no_password_survives_scrubbing(password):
    url = f"https://user:{password}@api.example.com/v1"
    assert f":{password}@" not in scrub_text(f"error at {url}: refused")
    assert password not in (public_url(url) or "").split("//", 1)[-1].split("api.example")[0]


@pytest.mark.parametrize("raw, clean", [
    ("\x1b[31mred alert\x1b[0m", "red alert"),
    ("\x1b]0;owned title\x07window title", "window title"),
    ("\x1b]8;;http://evil.example/\x1b\\click here\x1b]8;;\x1b\\", "click here"),
    ("hidden\x1b[?25l cursor", "hidden cursor"),
    ("\u202eevil bidi", "evil bidi"),
    ("tab\tand\nnewline\x00nul\x7fdel", "tab and newlinenuldel"),
    ("\x9b31mC1 CSI", "C1 CSI"),
    ("plain café tag", "plain café tag"),
])
def test_strip_controls(raw, clean):
    assert strip_controls(raw) == clean


@given(st.text())
def test_strip_controls_leaves_no_escape_or_control(text):
    out = strip_controls(text)
    assert not any(ord(c) < 32 or 0x7f <= ord(c) <= 0x9f for c in out)


def test_printable_shows_escapes_instead_of_obeying_them():
    assert printable("a\x1b[2Jb\nc\u202ed") == "a\\x1b[2Jb\nc\\u202ed"
    assert printable("ordinary text") == "ordinary text"
    assert "\x1b" not in printable("\x1b]52;c;Zm9v\x07")
