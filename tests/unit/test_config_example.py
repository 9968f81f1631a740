"""config.example.yaml loads, and documents every option the server knows."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import yaml

from pubsubd.config import Config, loads

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"


def _option_paths(cls: type, prefix: str = "") -> list[str]:
    paths = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = f"{prefix}{f.name}"
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            paths.extend(_option_paths(hint, path + "."))
        else:
            paths.append(path)
    return paths


def _documented(data: dict, path: str) -> bool:
    node: object = data
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def test_example_config_is_valid() -> None:
    config = loads(EXAMPLE.read_text(), str(EXAMPLE))
    assert config.domains


def test_example_config_documents_every_option() -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    missing = [p for p in _option_paths(Config) if not _documented(data, p)]
    assert not missing, f"config.example.yaml lacks: {', '.join(missing)}"
