"""Log lines are always written: text a caller sent cannot make a line fail to encode."""

from __future__ import annotations

import json
from typing import Any

from sender import logs


def test_a_lone_surrogate_in_a_field_is_written_as_its_escape(capsys: Any) -> None:
    logs.write("ERROR", "invalid email request", details=[{"field": "a\ud800", "problem": "é"}])
    [line] = capsys.readouterr().out.splitlines()
    entry = json.loads(line)
    assert entry["details"] == [{"field": "a\ud800", "problem": "é"}]
    assert "é" in line  # non-ASCII text stays readable
    assert "\\ud800" in line


def test_json_text_escapes_only_surrogates() -> None:
    text = logs.json_text({"k": "\\\ud800x", "emoji": "\U0001f600"})
    assert text == '{"k": "\\\\\\ud800x", "emoji": "\U0001f600"}'
    assert json.loads(text) == {"k": "\\\ud800x", "emoji": "\U0001f600"}
