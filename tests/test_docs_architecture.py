"""docs/architecture.md's module map lists every module of the four packages, and nothing that is gone."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ckpt", "protocol", "monitor", "trainer")


def mapped() -> set[str]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    table = text[text.index("## Module map"):]
    return {name for line in table.splitlines() if line.startswith("| `")
            for name in re.findall(r"`([a-z_/]+(?:\.py|/))`", line.split("|")[1])}


def modules() -> set[str]:
    """Top-level modules of each package, and its subpackages (folders) as `pkg/sub/`."""
    found = set()
    for package in PACKAGES:
        for item in (ROOT / package).iterdir():
            if item.suffix == ".py" and item.name != "__init__.py":
                found.add(f"{package}/{item.name}")
            elif item.is_dir() and not item.name.startswith((".", "_")):
                found.add(f"{package}/{item.name}/")
    return found


def test_every_module_is_on_the_map() -> None:
    assert sorted(modules() - mapped()) == []


def test_every_module_on_the_map_exists() -> None:
    assert sorted(name for name in mapped() if not (ROOT / name).exists()) == []
