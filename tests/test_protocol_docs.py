"""docs/protocol.md's tables say what protocol/schemas.py defines: no word is missing or extra."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from protocol import COMMANDS, EVENTS, STATES, STATUS, VALIDATION
from protocol.schemas import (
    ACTION_COMMANDS,
    BOOL,
    DEFAULT_PUB,
    DEFAULT_REP,
    ENVELOPE,
    FLOAT,
    HEARTBEAT,
    HISTORY_FIELDS,
    INT,
    MAP,
    MAX_ARRAY_LEN,
    MAX_DEPTH,
    MAX_FRAME_BYTES,
    MAX_MAP_LEN,
    MAX_TOPIC_BYTES,
    PROTOCOL_VERSION,
    QUERY_COMMANDS,
    REPLY,
    REQUEST,
    STR,
    VALIDATION_POINT_FIELDS,
)

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


def rows(text: str) -> dict[str, list[str]]:
    """Each table row's cells, by every backticked name in its first cell."""
    found = {}
    for line in text.splitlines():
        cells = cells_of(line)
        for name in re.findall(r"`([a-z_]+)`", cells[0]) if len(cells) > 1 else []:
            found[name] = cells
    return found


DOC_TYPES = {"int": INT, "float": FLOAT, "str": STR, "bool": BOOL, "map": MAP, "bytes": (bytes,)}


def documented_types(cell: str) -> set[type]:
    """`float or nil`, `str `HH:MM:SS``, `float 0..1 or nil` -> the Python types a field accepts."""
    types = set(DOC_TYPES[cell.split()[0].rstrip(",")])
    return types | {type(None)} if "or nil" in cell else types


@pytest.mark.parametrize("title, schema", [("### Envelope", ENVELOPE), ("### `status`", STATUS),
                                            ("### `heartbeat`", HEARTBEAT), ("### `validation`", VALIDATION)])
def test_each_documented_field_has_the_schemas_type_requirement_and_choices(title: str, schema: dict) -> None:
    table = rows(section(title))
    assert list(table) == list(schema)
    for name, field in schema.items():
        cells = table[name]
        assert documented_types(cells[1]) == set(field.types), name
        required = cells[2] == "yes" if len(cells) == 4 else "optional" not in cells[1]
        assert required == field.required, name
        if field.choices:
            assert re.findall(r"`([a-z0-9_]+)`", cells[-1]) == list(field.choices), name


def test_the_documented_commands_are_queries_or_actions_with_the_schemas_arguments() -> None:
    table = rows(section("## REP commands"))
    assert [n for n, cells in table.items() if cells[1] == "query"] == list(QUERY_COMMANDS)
    assert [n for n, cells in table.items() if cells[1] == "action"] == list(ACTION_COMMANDS)
    for name, args in COMMANDS.items():
        cell = table[name][2]
        assert re.findall(r"`([a-z_]+)`", cell) == list(args), name
        assert all(field.required == ("optional" not in cell) for field in args.values()), name


def test_the_documented_point_fields_are_the_protocols() -> None:
    history = rows(section("## REP commands"))["history"][3]
    for constant, fields in (("HISTORY_FIELDS", HISTORY_FIELDS), ("VALIDATION_POINT_FIELDS", VALIDATION_POINT_FIELDS)):
        listed = history.split(f"`protocol.{constant}`:", 1)[1].split(")", 1)[0]
        assert tuple(re.findall(r"`([a-z_]+)`", listed)) == fields, constant


def test_the_documented_request_reply_endpoints_and_limits_are_the_codes() -> None:
    rep = section("## REP commands")
    request = re.search(r"`(\{\"v\": 1, \"command\".*?\})`", rep).group(1)
    assert re.findall(r'"([a-z]+)":', request) == list(REQUEST)
    assert f"command names are `{REQUEST['command'].pattern}`" in rep
    assert '`{"v": 1, "ok": bool, ...}`' in rep and '`"error": str`' in rep and list(REPLY) == ["v", "ok", "error"]
    endpoints = {cells[0]: cells[2] for cells in rows_of(section("## Endpoints"))}
    assert endpoints["PUB"].startswith(f"`{DEFAULT_PUB}`") and endpoints["REP"].startswith(f"`{DEFAULT_REP}`")
    limits = {cells[0].split()[-1]: cells[1] for cells in rows_of(section("## Limits"))}
    assert limits["reply)"].startswith(f"{MAX_FRAME_BYTES // 2**20} MiB")
    documented = {"topic": MAX_TOPIC_BYTES, "maps/lists": MAX_DEPTH, "array": MAX_ARRAY_LEN, "map": MAX_MAP_LEN}
    for row, value in documented.items():
        assert int(re.match(r"[\d ]+", limits[row]).group(0).replace(" ", "")) == value, row
    assert f"`v` | int | protocol version, `{PROTOCOL_VERSION}`" in section("### Envelope")


def rows_of(text: str) -> list[list[str]]:
    return [cells_of(line) for line in text.splitlines() if line.startswith("|") and not line.startswith("|---")][1:]


def cells_of(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]  # `\|` is a | inside a cell
