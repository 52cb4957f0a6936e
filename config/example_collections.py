"""Example collections a new user can copy: point `OFFGRID_COLLECTIONS` at your own module.

- `todos`: a schema'd collection resolved field by field, last writer wins (`lww`).
- `accounts`: optimistic concurrency (`server_wins`): a write must name the version it saw.
- `notes`: schemaless, `lww`.
"""

from marshmallow import Schema, fields, validate

from sync.collections import CollectionSpec


class TodoSchema(Schema):
    title = fields.String(required=True, validate=validate.Length(min=1, max=500))
    done = fields.Boolean()
    due = fields.String(allow_none=True)
    tags = fields.List(fields.String(validate=validate.Length(max=64)))


class AccountSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    balance_cents = fields.Integer(required=True)


COLLECTIONS = [
    CollectionSpec("todos", schema=TodoSchema, strategy="lww"),
    CollectionSpec("accounts", schema=AccountSchema, strategy="server_wins"),
    CollectionSpec("notes"),
]
