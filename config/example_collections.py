"""Example collections a new user can copy: point `OFFGRID_COLLECTIONS` at your own module.

- `todos`: a schema'd collection resolved field by field, last writer wins (`lww`).
- `accounts`: optimistic concurrency (`server_wins`): a write must name the version it saw.
- `notes`: schemaless, `lww`.
- `counters`: a `custom` strategy: clients send increments, the server keeps the total.
"""

from typing import Any

from marshmallow import Schema, fields, validate

from sync.collections import CollectionSpec
from sync.conflicts import Rejection


class TodoSchema(Schema):
    title = fields.String(required=True, validate=validate.Length(min=1, max=500))
    done = fields.Boolean()
    due = fields.String(allow_none=True)
    tags = fields.List(fields.String(validate=validate.Length(max=64)))


class AccountSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    balance_cents = fields.Integer(required=True)


class CounterSchema(Schema):
    delta = fields.Integer(required=True, strict=True)


def add_delta(current: dict[str, Any] | None, mutation: dict[str, Any]) -> Any:
    """`custom` resolver: a put carries {"delta": n}; the record keeps {"total": sum}.

    Increments commute, so offline clients never lose each other's counts; a total may not go
    below zero. Return the new value, None to delete, or a `Rejection`.
    """
    if mutation["op"] == "delete":
        return None
    total = (current or {}).get("total", 0) + mutation["value"]["delta"]
    if total < 0:
        return Rejection("below_zero")
    return {"total": total}


COLLECTIONS = [
    CollectionSpec("todos", schema=TodoSchema, strategy="lww"),
    CollectionSpec("accounts", schema=AccountSchema, strategy="server_wins"),
    CollectionSpec("notes"),
    CollectionSpec(
        "counters",
        schema=CounterSchema,
        strategy="custom",
        resolver="config.example_collections.add_delta",
    ),
]
