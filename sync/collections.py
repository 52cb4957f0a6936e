"""Collections that clients may sync, as declared in configuration.

A configuration module (named by `OFFGRID_COLLECTIONS`) exposes `COLLECTIONS`, a list of
`CollectionSpec`. A collection has an optional marshmallow schema (schemaless when absent)
and a conflict strategy. Unknown collections are rejected by the API.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from marshmallow import Schema

STRATEGIES = ("lww", "server_wins", "custom")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")


@dataclass(frozen=True)
class CollectionSpec:
    name: str
    schema: type[Schema] | None = None
    strategy: str = "lww"
    resolver: str | None = None  # dotted path of the `custom` strategy callable

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"collection name {self.name!r} must match {_NAME.pattern}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"collection {self.name!r}: unknown strategy {self.strategy!r}")
        if (self.strategy == "custom") != (self.resolver is not None):
            raise ValueError(f"collection {self.name!r}: `resolver` goes with strategy custom")

    def validation_errors(self, value: Mapping[str, Any]) -> dict[str, Any] | None:
        """Return marshmallow's error messages for `value`, or None when it is valid."""
        if self.schema is None:
            return None
        errors = self.schema().validate(value)
        return errors or None


class CollectionRegistry:
    """The declared collections, by name."""

    def __init__(self, specs: list[CollectionSpec]) -> None:
        names = [spec.name for spec in specs]
        duplicated = {name for name in names if names.count(name) > 1}
        if duplicated:
            raise ValueError(f"collections declared twice: {', '.join(sorted(duplicated))}")
        self._specs = {spec.name: spec for spec in specs}

    def get(self, name: str) -> CollectionSpec | None:
        return self._specs.get(name)

    @property
    def names(self) -> list[str]:
        return sorted(self._specs)


def load_collections(module_name: str) -> CollectionRegistry:
    """Import the configuration module and build the registry from its `COLLECTIONS`."""
    module = importlib.import_module(module_name)
    specs = getattr(module, "COLLECTIONS", None)
    if not isinstance(specs, list) or not all(isinstance(s, CollectionSpec) for s in specs):
        raise ValueError(f"{module_name}.COLLECTIONS must be a list of CollectionSpec")
    return CollectionRegistry(specs)
