"""Admin API (SPEC §2): members of shared scopes. Requires an API key with the `admin` scope."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from werkzeug.routing import BaseConverter, ValidationError

from api.bodies import Blueprint
from api.errors import APIError
from api.keys import require_api_key
from api.resources import cache, db
from api.schemas import USER_ID_RULE, MemberSchema, MembersSchema, RoleSchema
from sync import membership

blp = Blueprint("admin", __name__, url_prefix="/v1/admin", description="Administration")


class ScopeConverter(BaseConverter):
    """A scope in a URL path (`sync.membership.is_scope`); anything else is not a route (404)."""

    regex = r"[^/]{1,300}"

    def to_python(self, value: str) -> str:
        if not membership.is_scope(value):
            raise ValidationError()
        return value


SCOPE_PATH_SCHEMA = {"type": "string", "description": "`<kind>:<id>`", "example": "team:42"}


def _shared_scope(scope: str) -> str:
    if membership.is_personal(scope):
        raise APIError(
            400, "invalid_scope", "personal scopes (user:<sub>) have no members to manage"
        )
    return scope


@blp.route("/scopes/<scope:scope>/members/<string:user>", methods=["PUT", "DELETE"])
class Member(MethodView):
    @require_api_key("admin")
    @blp.arguments(RoleSchema, error_status_code=400)
    @blp.response(200, MemberSchema)
    @blp.alt_response(201, schema=MemberSchema, description="The member was added")
    def put(self, body: dict[str, Any], scope: str, user: str) -> Any:
        """Add a member to a shared scope, or change their role."""
        scope = _shared_scope(scope)
        if not membership.is_user_id(user):
            raise APIError(400, "invalid_user", f"a user id {USER_ID_RULE}")
        created = membership.set_member(db(), scope, user, body["role"], cache())
        return {"user": user, "role": body["role"]}, 201 if created else 200

    @require_api_key("admin")
    @blp.response(204)
    def delete(self, scope: str, user: str) -> Any:
        """Remove a member; their next pull and push lose the scope at once."""
        scope = _shared_scope(scope)
        if not membership.remove_member(db(), scope, user, cache()):
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
