"""Collections that clients may sync, as declared in configuration.

A configuration module (named by `OFFGRID_COLLECTIONS`) exposes `COLLECTIONS`, a list of
`CollectionSpec`. A collection has an optional marshmallow schema (schemaless when absent)
and a conflict strategy. Unknown collections are rejected by the API.

Every process (web, worker, beat) finds the module the same way: anywhere on the Python path,
or in the directory the process was started in (the project root under `./dev` and the
Procfile), which gunicorn puts on the path and Celery does not.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from marshmallow import Schema

STRATEGIES = ("lww", "server_wins", "custom")
NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")


@dataclass(frozen=True)
class CollectionSpec:
    name: str
    schema: type[Schema] | None = None
    strategy: str = "lww"
    resolver: str | None = None  # dotted path of the `custom` strategy callable

    def __post_init__(self) -> None:
        if not NAME_PATTERN.match(self.name):
            raise ValueError(f"collection name {self.name!r} must match {NAME_PATTERN.pattern}")
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


class CollectionsUnavailable(Exception):
    """The module named by `OFFGRID_COLLECTIONS` cannot be loaded; the process must not start."""


def load_collections(module_name: str) -> CollectionRegistry:
    """Import the configuration module and build the registry from its `COLLECTIONS`."""
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())  # after everything else: it never shadows a package
    try:
        module = importlib.import_module(module_name)
        specs = getattr(module, "COLLECTIONS", None)
        if not isinstance(specs, list) or not all(isinstance(s, CollectionSpec) for s in specs):
            raise ValueError(f"{module_name}.COLLECTIONS must be a list of CollectionSpec")
        return CollectionRegistry(specs)
    except Exception as exc:
        raise CollectionsUnavailable(
            f"OFFGRID_COLLECTIONS={module_name!r} cannot be loaded: {exc!r} (a module on the "
            f"Python path, or in the directory the process starts in: {os.getcwd()})"
        ) from exc
