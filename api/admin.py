"""Admin API (SPEC §2): members of shared scopes. Requires an API key with the `admin` scope."""

from __future__ import annotations

import re
from typing import Any

from flask.views import MethodView
from marshmallow import Schema, fields, validate
from werkzeug.routing import BaseConverter

from api.bodies import Blueprint
from api.errors import APIError
from api.keys import require_api_key
from api.resources import db
from sync import membership

blp = Blueprint("admin", __name__, url_prefix="/v1/admin", description="Administration")
_USER = re.compile(r"^[^\s\x00-\x1f]{1,200}$")  # a JWT sub: may hold `|` (auth0|…)


class ScopeConverter(BaseConverter):
    """A scope in a URL path: `<kind>:<id>`; anything else is not a route (404)."""

    regex = r"[a-z][a-z0-9_-]{0,31}:[^/\s|]{1,200}"


SCOPE_PATH_SCHEMA = {"type": "string", "pattern": f"^{ScopeConverter.regex}$"}


def _shared_scope(scope: str) -> str:
    if membership.is_personal(scope):
        raise APIError(
            400, "invalid_scope", "personal scopes (user:<sub>) have no members to manage"
        )
    return scope


class RoleSchema(Schema):
    role = fields.String(required=True, validate=validate.OneOf(membership.ROLES))


class MemberSchema(Schema):
    user = fields.String(required=True)
    role = fields.String(required=True)


class MembersSchema(Schema):
    scope = fields.String(required=True)
    members = fields.List(fields.Nested(MemberSchema), required=True)


@blp.route("/scopes/<scope:scope>/members/<string:user>", methods=["PUT", "DELETE"])
class Member(MethodView):
    @require_api_key("admin")
    @blp.arguments(RoleSchema, error_status_code=400)
    @blp.response(200, MemberSchema)
    @blp.alt_response(201, schema=MemberSchema, description="The member was added")
    def put(self, body: dict[str, Any], scope: str, user: str) -> Any:
        """Add a member to a shared scope, or change their role."""
        scope = _shared_scope(scope)
        if not _USER.match(user):
            raise APIError(400, "invalid_user", "a user id is 1-200 printable characters, no |")
        created = membership.set_member(db(), scope, user, body["role"])
        return {"user": user, "role": body["role"]}, 201 if created else 200

    @require_api_key("admin")
    @blp.response(204)
    def delete(self, scope: str, user: str) -> Any:
        """Remove a member; their next pull and push lose the scope at once."""
        scope = _shared_scope(scope)
        if not membership.remove_member(db(), scope, user):
            raise APIError(404, "not_found", f"{user!r} is not a member of {scope!r}")
        return None


@blp.route("/scopes/<scope:scope>/members", methods=["GET"])
class Members(MethodView):
    @require_api_key("admin")
    @blp.response(200, MembersSchema)
    def get(self, scope: str) -> Any:
        """The members of a shared scope and their roles."""
        scope = _shared_scope(scope)
        return {"scope": scope, "members": membership.list_members(db(), scope)}
