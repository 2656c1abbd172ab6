"""docs/protocol.md's tables say what protocol/schemas.py defines: no word is missing or extra."""

from __future__ import annotations

import re
from pathlib import Path

from protocol import COMMANDS, EVENTS, STATES, STATUS, VALIDATION
from protocol.schemas import HEARTBEAT

DOC = (Path(__file__).parent.parent / "docs" / "protocol.md").read_text()


def section(title: str) -> str:
    start = DOC.index(title)
    following = re.search(r"^#{2,3} ", DOC[start + len(title):], re.MULTILINE)
    return DOC[start:start + len(title) + following.start()] if following else DOC[start:]


def first_column(text: str) -> list[str]:
    """The backticked words in the first cell of every table row (header and rule rows skipped)."""
    names = []
    for line in text.splitlines():
        cells = line.split("|")
        if len(cells) > 2 and "`" in cells[1]:
            names += re.findall(r"`([a-z_]+)`", cells[1])
    return names


def tables(text: str) -> list[str]:
    return re.split(r"\n\n(?=\|)", text)[1:]


def test_the_documented_status_and_validation_fields_are_the_schema_fields() -> None:
    assert first_column(section("### `status`")) == list(STATUS)
    assert first_column(section("### `validation`")) == list(VALIDATION)
    assert first_column(section("### `heartbeat`")) == list(HEARTBEAT)


def test_the_documented_event_kinds_and_their_data_are_the_schema_ones() -> None:
    kinds_table = tables(section("### `event`"))[1]
    row = re.compile(r"^\| `([a-z_]+)` \|([^|]*)\|", re.MULTILINE)
    rows = {m.group(1): m.group(2) for m in row.finditer(kinds_table)}
    assert list(rows) == list(EVENTS)
    for kind, cell in rows.items():
        required = re.findall(r"\*\*`([a-z_]+)`\*\*", cell)
        assert re.findall(r"`([a-z_]+)`", cell) == list(EVENTS[kind]), kind
        assert required == [name for name, field in EVENTS[kind].items() if field.required], kind


def test_the_documented_states_and_commands_are_the_protocol_ones() -> None:
    heartbeat_state = next(line for line in section("### `heartbeat`").splitlines()
                           if line.startswith("| `state`"))
    assert re.findall(r"`([a-z_]+)`", heartbeat_state.split("|")[4]) == list(STATES)
    assert sorted(first_column(section("## REP commands"))) == sorted(COMMANDS)
