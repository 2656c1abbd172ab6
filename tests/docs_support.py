"""Reading the project's documents for the tests that keep them true (tests/test_docs_truth.py): the claims
they make about command lines, config keys, defaults, modules and paths, each with where it was made
(what the code says instead: tests/introspection_support.py).

Conventions the documents follow so that a test can read them:
- a command line is named as `python -m MODULE` or `just RECIPE` (a command not ours, like `pip install`
  or `torchrun`, holds only to the end of its code span or line); every `--flag` after it in the same
  paragraph (or the next one, when this one ends with a colon), up to the next command line, is one of its
  flags; else a flag is one of the CLI named in the section's heading; else one of some CLI's flags. The
  word after the CLI's name, or a list item's first word, names a subcommand for that paragraph;
- a config key is `section.key` (in a ```python block only inside quotes, where `x.y` is Python);
- a default is stated as `` `--flag` (VALUE) `` or `` `section.key` (VALUE) ``, in a `| flag | default |`
  table, or as `name=VALUE` in a call signature `Name(...)` of a class or function.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from tests.introspection_support import PACKAGES, ROOT, checkable, sections

DOCS = ("README.md", "monitor/README.md", *(f"docs/{p.name}" for p in sorted((ROOT / "docs").glob("*.md"))))
FILE_SUFFIXES = {"py", "md", "toml", "json", "jsonl", "pth", "pt", "onnx", "pkl", "png", "csv", "mp4", "js", "txt"}


@dataclass(frozen=True)
class Claim:
    doc: str
    line: int
    what: str  # the flag, key, path or name claimed
    cli: str | None = None  # for a flag: the CLI's module (None: no CLI named before it; "-": not ours)
    sub: str | None = None  # for a flag: the word after the CLI's name (maybe its subcommand)
    value: str | None = None  # for a default: the value as written

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}: {self.what}" + (f" ({self.value})" if self.value is not None else "")


@cache
def read(doc: str) -> str:
    return (ROOT / doc).read_text()


def line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def prose(doc: str) -> str:
    """The document with its ```python blocks reduced to their string literals (blanks keep positions)."""
    def strings_only(block: re.Match) -> str:
        return "".join(m.group(0) if m.group(1) else re.sub(r"[^\n]", " ", m.group(0))
                       for m in re.finditer(r'("[^"\n]*")|[^"]+|"', block.group(0)))
    return re.sub(r"```python\n.*?```", strings_only, read(doc), flags=re.DOTALL)


# --- command lines --------------------------------------------------------------------------------------

# How the documents name a command line -> the module whose `main(argv)` parses it (None: not ours).
CLIS: list[tuple[str, str | None]] = [
    (r"(?:python -m |just )(?:trainer\.)?upscale\b", "trainer.upscale"),
    (r"(?:python -m |just )(?:trainer\.)?evaluate\b", "trainer.evaluate"),
    (r"(?:python -m |just )(?:trainer\.)?export\b", "trainer.export"),
    (r"(?:python -m |just )(?:trainer\.)?prepare\b", "trainer.prepare.__main__"),
    (r"python -m monitor\.demo\b|just demo\b", "monitor.demo"),
    (r"python -m trainer\.config\b", "trainer.config"),
    (r"(?:python )?-m trainer\b(?!\.)|just train\b", "trainer.__main__"),
    (r"python -m monitor\b|just monitor\b", "monitor.__main__"),
    (r"python -m protocol\b|just ctl\b", "protocol.__main__"),
    (r"python -m ckpt\b|just ckpt\b", "ckpt.__main__"),
    (r"torchrun\b|pip install\b|python -m (?:pip|pytest|bench)\b|just (?:bench|test|chaos|lint)\b|just(?= --list)"
     r"|openssl\b", None),
]
_CLI = re.compile("|".join(f"(?P<c{i}>{pattern})" for i, (pattern, _) in enumerate(CLIS)))
_FLAG = re.compile(r"(?<![\w-])--(?:\{([a-z0-9,]+)\}(?=-[a-z])|(?=[a-z0-9]))([a-z0-9-]*[a-z0-9])")
_TOKEN = re.compile(f"{_CLI.pattern}|(?P<flag>{_FLAG.pattern})|(?P<heading>^#+ )|(?P<item>^[-*] `(?=[a-z]+[ `]))"
                    r"|(?P<blank>\n\n)", re.MULTILINE)
_VALUE = r"([\w.+-]+)(?:[:;,][^)`]*)?"  # a stated default: one word, maybe followed by `: why`


def cli_flags(doc: str) -> Iterator[Claim]:
    """Every `--flag` of the document, with its command line (the conventions above) and the default stated
    with it (`` `--flag` (VALUE) ``, or its row's cell in a table with a `default` column). A command line
    inside a ```text block is quoted output and names nothing."""
    text = read(doc)
    quoted = [range(m.start(), m.end()) for m in re.finditer(r"^```text\n.*?^```", text, re.DOTALL | re.MULTILINE)]
    cli = sub = item = None  # named in this paragraph (or the one before, when it ends with a colon)
    section = None  # named in the heading
    foreign_until = -1  # a command that is not ours (`pip install ...`) holds until here
    for m in _TOKEN.finditer(text):
        if m.group("heading"):
            cli = sub = item = None
            named = _CLI.search(text, m.end(), text.find("\n", m.end()))
            section = (CLIS[int(named.lastgroup[1:])][1] or "-") if named else None
        elif m.group("blank"):
            if not text[:m.start()].rstrip().endswith(":"):
                cli = sub = item = None
        elif m.group("item"):
            item = re.match(r"[a-z]+", text[m.end():]).group(0)
        elif m.group("flag"):
            alternatives, rest = _FLAG.match(m.group(0)).groups()
            stated = re.match(rf"` \({_VALUE}\)", text[m.end():]) if text[m.start() - 1] == "`" else None
            value = stated.group(1) if stated else table_default(text, m.start())
            for head in alternatives.split(",") if alternatives else [""]:
                owner = "-" if m.start() < foreign_until else cli or section
                yield Claim(doc, line_of(text, m.start()), f"--{head}{rest}", owner, item or sub, value)
        elif not any(m.start() in block for block in quoted):
            module = CLIS[int(m.lastgroup[1:])][1]
            if module is None:
                foreign_until = _command_end(text, m.end())
                continue
            cli, foreign_until = module, -1
            after = re.match(r"[ `]+([a-z]+)\b", text[m.end():])
            sub, item = (after.group(1) if after else None), None


def _command_end(text: str, start: int) -> int:
    """Where a command written from `start` ends: its code span, `$(...)`, `&&`, or its line (with `\\`
    continuations)."""
    line_end = re.compile(r"(?<!\\)\n").search(text, start)
    ends = [m.start() for m in (re.compile(r"[`)]|&&").search(text, start), line_end) if m]
    return min(ends, default=len(text))


def our_clis() -> list[str]:
    return [module for _, module in CLIS if module]


# --- config keys and defaults ----------------------------------------------------------------------------


def config_keys(doc: str) -> Iterator[Claim]:
    """Every `section.key` of the document, with the default stated with it, as flags have theirs."""
    text, written = prose(doc), read(doc)
    key = re.compile(rf"(?<![\w./-])(?:{'|'.join(sections())})\.[a-z_]\w*(?:\.[a-z_]\w*)?(?![\w(])")
    for m in key.finditer(text):
        if m.group(0).rsplit(".", 1)[1] not in FILE_SUFFIXES:
            stated = re.match(rf"` \({_VALUE}\)", written[m.end():]) if written[m.start() - 1] == "`" else None
            value = stated.group(1) if stated else table_default(written, m.start())
            yield Claim(doc, line_of(text, m.start()), m.group(0), value=value)


def table_default(text: str, pos: int) -> str | None:
    """The `default` cell of the table row at `pos` when its first cell names one flag or key only:
    `` `VALUE` ``, `off` or `none` (other cells, such as `$VARIABLE` or two values, state nothing checkable)."""
    start = text.rfind("\n", 0, pos) + 1
    row = text[start:text.find("\n", pos)]
    if not row.startswith("|"):
        return None
    header = start
    while header > 0 and text[text.rfind("\n", 0, header - 1) + 1] == "|":
        header = text.rfind("\n", 0, header - 1) + 1
    columns = [c.strip() for c in text[header:text.find("\n", header)].split("|")]
    cells = [c.strip() for c in row.split("|")]
    if pos - start > len(row.split("|", 2)[1]) + 1:
        return None  # the flag is not the row's subject
    if "default" not in columns or len(cells) != len(columns) or len(re.findall(r"`[^`]*`", cells[1])) != 1:
        return None
    value = re.fullmatch(r"`([^`$]+)`|(off|none)", cells[columns.index("default")])
    return (value.group(1) or value.group(2)) if value else None


# --- call signatures --------------------------------------------------------------------------------------

_LITERAL = re.compile(r'"[^"]*"|\'[^\']*\'|-?(?:\d[\d_]*\.?\d*|\.\d+)(?:e-?\d+)?|True|False|None|\{\}|\[\]|\(\)')


def _split_args(text: str) -> list[str]:
    parts, depth, start, quote = [], 0, 0, ""
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [*parts, text[start:]]


def _closing(text: str, start: int) -> int | None:
    depth = 0
    for i in range(start, min(len(text), start + 2000)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return i
    return None


def signature_defaults(doc: str) -> Iterator[Claim]:
    """`name=VALUE` (VALUE a literal, the first of `a|b` choices) in every `Name(...)` of the document;
    `what` is `Name.name`."""
    text = read(doc)
    for m in re.finditer(r"(?<![\w.])((?:[a-z_]+\.)*[A-Za-z_]\w*)\(", text):
        end = _closing(text, m.end() - 1)
        if end is None:
            continue
        for part in _split_args(text[m.end():end]):
            arg = re.match(r"\s*(?:#[^\n]*\n\s*)*([a-z_]\w*)\s*(?::[^=<>]+)?=\s*(.*)", part, re.DOTALL)
            literal = arg and _LITERAL.match(arg.group(2))
            if literal:
                yield Claim(doc, line_of(text, m.start()), f"{m.group(1)}.{arg.group(1)}", value=literal.group(0))


# --- modules and paths ------------------------------------------------------------------------------------


def dotted_names(doc: str) -> Iterator[Claim]:
    """`trainer.x.y` style names of the project's modules and what is in them."""
    text = read(doc)
    for m in re.finditer(rf"(?<![\w./-])(?:{'|'.join(PACKAGES)})(?:\.[A-Za-z_]\w*)+", text):
        if m.group(0).rsplit(".", 1)[1] not in FILE_SUFFIXES:
            yield Claim(doc, line_of(text, m.start()), m.group(0))


def file_names(doc: str) -> Iterator[Claim]:
    """`name.py` without a folder: in a package's README a module of that package (`monitor/link.py`),
    elsewhere a module of the project somewhere."""
    text, folder = read(doc), Path(doc).parent.name
    for m in re.finditer(r"(?<![\w./-])[a-z_]\w*\.py\b", text):
        name = f"{folder}/{m.group(0)}" if folder in PACKAGES else m.group(0)
        yield Claim(doc, line_of(text, m.start()), name)


def paths(doc: str) -> Iterator[Claim]:
    """`trainer/...py` style paths of the project's files and folders."""
    text = read(doc)
    for m in re.finditer(rf"(?<![\w./-])(?:{'|'.join((*PACKAGES, 'tests', 'docs'))})/[\w./*-]*[\w/*]", text):
        yield Claim(doc, line_of(text, m.start()), m.group(0))


def counts() -> dict[str, int]:
    """How many claims of each kind the tests check (docs/protocol.md's tables: tests/test_protocol_docs.py)."""
    from protocol import schemas
    from trainer.config import known_keys
    from trainer.report.control import SETTABLE

    flags = [c for doc in DOCS for c in cli_flags(doc) if c.cli != "-"]
    keys = [c for doc in DOCS for c in config_keys(doc)]
    signatures = [c for doc in DOCS for c in signature_defaults(doc) if checked_signature(c)]
    topics = (schemas.ENVELOPE, schemas.STATUS, schemas.HEARTBEAT, schemas.VALIDATION)
    return {
        "flags shown for a CLI": len(flags),
        "flag defaults": sum(c.value is not None and c.cli is not None for c in flags),
        "config keys named": len(keys),
        "config defaults": sum(c.value is not None for c in keys),
        "defaults in call signatures": len(signatures),
        "dotted module/object names": sum(1 for doc in DOCS for _ in dotted_names(doc)),
        "paths and file names": sum(1 for doc in DOCS for _ in (*paths(doc), *file_names(doc))),
        "protocol.md fields (name, type, required)": sum(map(len, topics)),
        "protocol.md event kinds and data fields": len(schemas.EVENTS) + sum(map(len, schemas.EVENTS.values())),
        "protocol.md states, commands (kind, args), point fields": len(schemas.STATES) + len(schemas.COMMANDS)
        + sum(map(len, schemas.COMMANDS.values())) + len(schemas.HISTORY_FIELDS) + len(schemas.VALIDATION_POINT_FIELDS),
        "protocol.md request/reply keys, endpoints, limits, version": len(schemas.REQUEST) + len(schemas.REPLY) + 2 + 5
        + 1,
        "internal-interfaces.md topics, commands, settable keys": len(schemas.TOPICS) + len(schemas.COMMANDS)
        + len(SETTABLE),
        "default.toml keys (generated, checked current)": len(known_keys()),
    }


def checked_signature(claim: Claim) -> bool:
    return checkable(*claim.what.rsplit(".", 1))


if __name__ == "__main__":
    found = counts()
    for kind, n in found.items():
        print(f"{n:5d}  {kind}")
    print(f"{sum(found.values()):5d}  claims in all")
