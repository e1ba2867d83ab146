"""Read and write TOML configs: ``tomllib`` reads, ``tomli_w`` writes (round-trip tested)."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomli_w

from experiments.errors import ConfigError

__all__ = ["load_toml", "loads_toml", "dumps_toml", "parse_value"]


def loads_toml(text: str, source: str = "<string>") -> dict[str, Any]:
    """Parse TOML text; a syntax error becomes a one-line :class:`ConfigError`."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file; a missing file or a syntax error is a :class:`ConfigError`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    return loads_toml(path.read_text(encoding="utf-8"), source=str(path))


def parse_value(text: str) -> Any:
    """A command-line value: a TOML literal if it parses as one (``3e-4``, ``true``,
    ``["l2", "er"]``, ``"quoted"``), otherwise the text itself as a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def dumps_toml(data: Mapping[str, Any]) -> str:
    """Serialise nested mappings with ``tomli_w``; ``None`` values are left out (TOML has no
    null: an absent key means "unset"). A value TOML cannot hold is a :class:`ConfigError`."""
    try:
        return tomli_w.dumps(_without_none(data))
    except TypeError as exc:
        raise ConfigError(f"cannot write the config as TOML: {exc}") from None


def _without_none(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_without_none(v) for v in value]
    return value
