"""Config dataclasses: plain values, JSON round trip, unknown keys refused.

Every network has a `<Name>Config(Config)` beside it; checkpoints store `cfg.to_dict()` and rebuild
the network from the file alone with `<Name>Config.from_dict(...)`.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, TypeVar

from bgedit_cli.errors import ConfigError

C = TypeVar("C", bound="Config")


@dataclasses.dataclass(frozen=True)
class Config:
    """Base class for network and training configs (frozen dataclasses of JSON-able values)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}.")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ConfigError(
                f"{cls.__name__}: unknown key(s) {', '.join(unknown)}; the file was written by a newer or "
                "different bgedit. Upgrade bgedit or re-create the file."
            )
        missing = sorted(
            name
            for name, f in fields.items()
            if name not in data
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
        )
        if missing:
            raise ConfigError(f"{cls.__name__}: missing key(s) {', '.join(missing)}.")
        hints = typing.get_type_hints(cls)
        values = {k: _coerce(hints.get(k), v) for k, v in data.items()}
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{cls.__name__}: {exc}") from None

    @classmethod
    def from_json(cls: type[C], text: str) -> C:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{cls.__name__}: config is not valid JSON ({exc}).") from None
        return cls.from_dict(data)

    def replace(self: C, **changes: Any) -> C:
        return dataclasses.replace(self, **changes)


def _coerce(hint: Any, value: Any) -> Any:
    """JSON turns tuples into lists; turn them back where the field is a tuple (or an optional tuple)."""
    if not isinstance(value, list):
        return value
    hints = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union \
        else (hint,)
    return tuple(value) if any(typing.get_origin(h) is tuple for h in hints) else value
