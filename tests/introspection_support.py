"""What the code says, for the tests that hold the documents to it (tests/docs_support.py reads the
documents): each CLI's argparse parser, the trainer Config's keys and defaults, the object a dotted name
means, a parameter's default, the project's module files."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("trainer", "ckpt", "protocol", "monitor", "bench")


class _Parsed(BaseException):
    """Raised by the patched `parse_args`: carries the parser a CLI's `main` built."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser


@cache
def parser_of(module: str, sub: str | None = None) -> argparse.ArgumentParser:
    """The parser `module.main([sub, "--help"])` builds: caught when it parses, before the CLI does any
    work (a CLI that hands a subcommand to another parser gets `sub`, so that parser is the one caught)."""
    main = importlib.import_module(module).main

    def caught(parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        raise _Parsed(parser)

    with mock.patch.object(argparse.ArgumentParser, "parse_args", caught), \
            mock.patch.object(argparse.ArgumentParser, "parse_known_args", caught):
        try:
            main([sub, "--help"] if sub else ["--help"])
        except _Parsed as got:
            return got.parser
    raise AssertionError(f"{module}.main never parsed its command line")


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:  # noqa: SLF001 - argparse offers no public listing
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            found.update(action.choices)
    return found


def options(module: str, sub: str | None = None) -> dict[str, argparse.Action]:
    """The flags of a CLI: its own and those of subcommand `sub` and its subcommands (no such
    subcommand: of all of them)."""
    parser = parser_of(module, sub)
    found = dict(parser._option_string_actions)  # noqa: SLF001
    subs = subparsers(parser)
    for name, child in subs.items():
        if sub not in subs or name == sub:
            found.update(_all_options(child))
    return found


def _all_options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    found = dict(parser._option_string_actions)  # noqa: SLF001
    for child in subparsers(parser).values():
        found.update(_all_options(child))
    return found


def config_fields() -> dict[str, Any]:
    """Every key of the trainer's Config (derived ones too) -> its default."""
    from trainer.config import Config

    def walk(obj: Any, prefix: str) -> Iterator[tuple[str, Any]]:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                yield from walk(value, f"{prefix}{f.name}.")
            else:
                yield prefix + f.name, value
    return dict(walk(Config(), ""))


def model_arguments() -> set[str]:
    """What `model.options.NAME` may name: an argument of some registered model."""
    from trainer import models
    from trainer.config import _model_arguments

    return set().union(*(_model_arguments(name) or set() for name in models.known_models()))


def sections() -> tuple[str, ...]:
    from trainer.config import Config

    return tuple(f.name for f in dataclasses.fields(Config))


def same_value(written: str, actual: Any) -> bool:
    """A documented default equals the code's: numbers by value, `off`/`none` for False/None, else text."""
    if written == "off":
        return actual is False
    if written == "none":
        return actual is None
    if isinstance(actual, bool):
        return written.lower() == str(actual).lower()
    if isinstance(actual, (int, float)):
        try:
            return float(written) == float(actual)
        except ValueError:
            return False
    return written == str(actual)


# Where a bare name in a signature is looked up, in this order.
NAMESPACES = ("ckpt", "protocol", "monitor", "trainer.config", "trainer.data", "trainer.train.losses",
              "trainer.train.schedule", "trainer.train.adaptive", "trainer.train.divergence", "trainer.train.loop",
              "trainer.infer", "trainer.infer.load", "trainer.infer.sequence", "trainer.infer.model", "trainer.models")


def resolve(name: str) -> Any:
    """The object a dotted or bare name in the docs means; None when it is not one of the project's."""
    if name.split(".")[0] in PACKAGES:
        return resolve_dotted(name)
    if "." in name:
        return None  # an attribute of something else: `torch.load`, `model.activity`
    for namespace in NAMESPACES:
        found = resolve_dotted(f"{namespace}.{name}")
        if found is not None and not inspect.ismodule(found):
            return found
    return None


def resolve_dotted(name: str) -> Any:
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr, None)
            if obj is None:
                return None
        return obj
    return None


def parameter_default(target: Callable, name: str) -> Any:
    """The default of parameter `name` (a dataclass field's factory is called); KeyError when there is none."""
    if dataclasses.is_dataclass(target):
        for f in dataclasses.fields(target):
            if f.name == name:
                if f.default is not dataclasses.MISSING:
                    return f.default
                if f.default_factory is not dataclasses.MISSING:
                    return f.default_factory()
    parameter = inspect.signature(target).parameters[name]
    if parameter.default is inspect.Parameter.empty:
        raise KeyError(name)
    return parameter.default


def accepts_any_keyword(target: Callable) -> bool:
    try:
        return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(target).parameters.values())
    except (TypeError, ValueError):
        return True


@cache
def project_files() -> set[str]:
    return {p.name for folder in (*PACKAGES, "tests") for p in (ROOT / folder).rglob("*.py")}


def checkable(name: str, argument: str) -> bool:
    """Whether `name` is one of the project's classes or functions and `argument` one whose default can be
    compared (one it has, or any name when it takes no `**kwargs`)."""
    target = resolve(name)
    if target is None:
        return False
    try:
        return argument in inspect.signature(target).parameters or not accepts_any_keyword(target)
    except (TypeError, ValueError):
        return False
