"""Read and write the TOML subset our configs use (tables of scalars, arrays and sub-tables).

Reading uses ``tomllib`` (``tomli`` before Python 3.11). Writing is done here rather than
with a dependency: our configs only hold strings, numbers, booleans, arrays of those and
nested tables, which a few lines serialise exactly (round-trip tested).
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from experiments.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["load_toml", "loads_toml", "dumps_toml", "parse_value"]

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


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


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(str(k))} = {_value(v)}" for k, v in value.items()) + "}"
    raise ConfigError(f"cannot write {value!r} (type {type(value).__name__}) to TOML")


def dumps_toml(data: Mapping[str, Any]) -> str:
    """Serialise nested mappings: scalars first, then one ``[table]`` per sub-mapping."""
    lines: list[str] = []
    _table(data, [], lines)
    return "\n".join(lines).strip() + "\n"


def _table(data: Mapping[str, Any], prefix: list[str], lines: list[str]) -> None:
    scalars = {k: v for k, v in data.items() if not isinstance(v, Mapping)}
    tables = {k: v for k, v in data.items() if isinstance(v, Mapping)}
    if prefix and (scalars or not tables):
        lines.append("")
        lines.append("[" + ".".join(_key(p) for p in prefix) + "]")
    for k, v in scalars.items():
        if v is None:
            continue  # TOML has no null: an absent key means "unset"
        lines.append(f"{_key(str(k))} = {_value(v)}")
    for k, v in tables.items():
        _table(v, [*prefix, str(k)], lines)
