"""The documents say what the code does: every flag a doc shows is its CLI's, every config key, default,
module and path it names exists and is the code's (conventions: tests/docs_support.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests import docs_support as docs
from tests import introspection_support as code
from tests.docs_support import DOCS, ROOT


def wrong(claims, check) -> list[str]:
    return [str(claim) for claim in claims if not check(claim)]


def flag_exists(claim: docs.Claim) -> bool:
    if claim.cli is None:  # no command line named before it in its section: one of some CLI's flags
        return any(claim.what in code.options(module) for module in docs.our_clis())
    return claim.cli == "-" or claim.what in code.options(claim.cli, claim.sub)


def flag_default_is_the_parsers(claim: docs.Claim) -> bool:
    """The parser's default, or where that is a stand-in (0, None) resolved later, its help's `default X`."""
    action = code.options(claim.cli, claim.sub)[claim.what]
    resolved_later = re.findall(r"default:? ([\w.+-]+)", action.help or "") if action.default in (0, None) else []
    return code.same_value(claim.value, action.default) or claim.value in resolved_later


@pytest.mark.parametrize("doc", DOCS)
def test_every_flag_a_doc_shows_for_a_cli_is_in_that_clis_parser(doc: str) -> None:
    assert wrong(docs.cli_flags(doc), flag_exists) == []


@pytest.mark.parametrize("doc", DOCS)
def test_every_default_a_doc_states_for_a_flag_is_the_parsers(doc: str) -> None:
    stated = [c for c in docs.cli_flags(doc) if c.value is not None and c.cli not in (None, "-") and flag_exists(c)]
    assert wrong(stated, flag_default_is_the_parsers) == []


@pytest.mark.parametrize("doc", DOCS)
def test_every_config_key_a_doc_names_is_in_config(doc: str) -> None:
    fields, options = code.config_fields(), code.model_arguments()

    def exists(claim: docs.Claim) -> bool:
        section, name, *option = claim.what.split(".")
        return (claim.what in fields if not option else
                f"{section}.{name}" == "model.options" and option[0] in options)
    assert wrong(docs.config_keys(doc), exists) == []


@pytest.mark.parametrize("doc", DOCS)
def test_every_config_default_a_doc_states_is_the_codes(doc: str) -> None:
    fields = code.config_fields()
    stated = [c for c in docs.config_keys(doc) if c.value is not None]
    assert wrong(stated, lambda c: c.what in fields and code.same_value(c.value, fields[c.what])) == []


@pytest.mark.parametrize("doc", DOCS)
def test_every_default_a_doc_writes_in_a_call_signature_is_the_codes(doc: str) -> None:
    def same(claim: docs.Claim) -> bool:
        name, arg = claim.what.rsplit(".", 1)
        try:
            return code.parameter_default(code.resolve(name), arg) == eval(claim.value)  # noqa: S307 - a literal
        except KeyError:
            return False  # the doc names an argument the code does not have, or one without a default
    assert wrong(filter(docs.checked_signature, docs.signature_defaults(doc)), same) == []


@pytest.mark.parametrize("doc", DOCS)
def test_every_module_and_name_a_doc_spells_with_dots_exists(doc: str) -> None:
    assert wrong(docs.dotted_names(doc), lambda c: code.resolve_dotted(c.what) is not None) == []


@pytest.mark.parametrize("doc", DOCS)
def test_every_path_a_doc_names_exists(doc: str) -> None:
    assert wrong(docs.paths(doc), lambda c: any(ROOT.glob(c.what.rstrip("/")))) == []
    assert wrong(docs.file_names(doc), lambda c: (ROOT / c.what).exists() if "/" in c.what
                 else c.what in code.project_files()) == []


# The readers themselves: what they find in a document written to break each rule.

BROKEN = """\
## A section
`python -m trainer.upscale --checkpoint F --no-such-flag` (`pip install --user av`) keeps `--crf` (19),
sets `train.seed` (7); the `model.no_such_key` and `trainer.train.loop.no_such_name` in `trainer/no_such_file.py`.

```python
trainer.config.ModelConfig(n_feats=31)   # model.n_feats here is Python
```

`python -m monitor`:

| flag | default | |
|---|---|---|
| `--port` | `5051` | |

## CLI: `python -m protocol`
- `send COMMAND [--topic T]`
"""


@pytest.fixture
def broken(tmp_path: Path) -> str:
    path = tmp_path / "broken.md"
    path.write_text(BROKEN)
    return str(path)


def test_the_readers_catch_each_kind_of_false_claim(broken: str) -> None:
    flags = list(docs.cli_flags(broken))
    assert [c.what for c in flags if not flag_exists(c)] == ["--no-such-flag", "--topic"]
    assert [c.cli for c in flags[:4]] == ["trainer.upscale", "trainer.upscale", "-", "trainer.upscale"]
    assert [(c.what, c.value) for c in flags if c.value] == [("--crf", "19"), ("--port", "5051")]
    assert [c.what for c in flags if c.value and not flag_default_is_the_parsers(c)] == ["--crf", "--port"]
    assert [(c.what, c.value) for c in docs.config_keys(broken)] == [("train.seed", "7"), ("model.no_such_key", None)]
    signatures = [(c.what, c.value) for c in docs.signature_defaults(broken)]
    assert signatures == [("trainer.config.ModelConfig.n_feats", "31")]
    assert [c.what for c in docs.dotted_names(broken)] == ["trainer.upscale", "trainer.train.loop.no_such_name",
                                                           "trainer.config.ModelConfig"]
    assert [c.what for c in docs.paths(broken)] == ["trainer/no_such_file.py"]
    assert code.resolve_dotted("trainer.train.loop.no_such_name") is None


def test_every_cli_parser_is_found_without_running_the_cli() -> None:
    for module in docs.our_clis():
        assert "--help" in code.options(module), module
    assert {"send", "watch", "keys"} <= set(code.subparsers(code.parser_of("protocol.__main__")))
    prune = code.options("ckpt.__main__", "prune")
    assert "--keep-last" in prune and "--json" not in prune  # a subcommand's flags are its own


# Lists the docs spell out word by word.


def test_the_interfaces_page_lists_the_protocols_topics_and_commands_and_the_settable_keys() -> None:
    import protocol
    from trainer.report.control import SETTABLE

    text = docs.read("docs/internal-interfaces.md")
    topics, commands = re.search(r"^Topics: (.*?)\. Commands: (.*?)\.$", text, re.MULTILINE | re.DOTALL).groups()
    assert re.findall(r"`(\w+)`", topics) == list(protocol.TOPICS)
    assert re.findall(r"`(\w+)`", commands) == list(protocol.COMMANDS)
    settable = re.search(r"K one of (.*?)\(`trainer.report.control.SETTABLE`\)", text, re.DOTALL).group(1)
    assert re.findall(r"`([\w.]+)`", settable) == list(SETTABLE)


def test_the_readme_says_which_torch_ci_installs_first() -> None:
    installs = re.findall(r"^python -m pip install .*$", (ROOT / ".ci" / "run").read_text(), re.MULTILINE)
    pinned = re.search(r"`\.ci/run` does it by installing `(torch==[\d.]+)` first", docs.read("README.md"))
    assert pinned and installs[1].endswith(f" {pinned.group(1)}") and installs[2].endswith('-e ".[dev]"')
