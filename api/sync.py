"""Sync endpoints (SPEC §2): push a batch, read its status, pull changes."""

from __future__ import annotations

import contextlib
import functools
import re
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from flask import Response, current_app, g, jsonify, request
from flask.views import MethodView

from api.auth import bearer_token, require_user, token_expiry
from api.bodies import Blueprint
from api.devices import note_seen
from api.errors import APIError
from api.greenlets import apart
from api.metrics import (
    BATCHES_ACCEPTED,
    LIVE_HELD,
    LIVE_LATENCY,
    LIVE_WAKEUPS,
    MUTATIONS_ACCEPTED,
)
from api.queueing import publish_or_503
from api.resources import db, resources
from api.schemas import (
    BatchAcceptedSchema,
    BatchStatusSchema,
    PullRequestSchema,
    PullResponseSchema,
    PushRequestSchema,
)
from sync import batches, membership
from sync.admission import BatchRefused, admit_batch
from sync.checkpoint import InvalidCheckpoint
from sync.live import CommitHub, Waiter, batch_key
from sync.pull import ForeignClient, ResyncRequired, pull
from sync.scopelog import SharedReads
from workers import queues

blp = Blueprint("sync", __name__, url_prefix="/v1/sync", description="Offline sync protocol v1")

_PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait=(\d+)")
_REFUSAL_STATUS = {"invalid": 400, "forbidden": 403, "too_large": 413}
MAX_WAIT_SECONDS = 30  # a push waiting for its batch
MAX_LIVE_WAIT_SECONDS = 60  # a live pull waiting for a commit
PULL_REPLY = PullResponseSchema()  # marshmallow schemas are reusable; one instance


def _prefer_wait(most: int = MAX_WAIT_SECONDS) -> int:
    match = _PREFER_WAIT.search(request.headers.get("Prefer", ""))
    return min(int(match.group(1)), most) if match else 0


def _wait_for_final(batch_id: str, user: str, seconds: int) -> dict[str, Any] | None:
    """The batch's final status within `seconds`, or None. The worker announces a batch it
    made final; the wait registers for that before its first look, so it answers within
    milliseconds. It also looks now and then (a batch made final elsewhere, by housekeeping,
    is not announced; without a subscription it polls)."""
    hub = resources().live
    deadline = time.monotonic() + seconds
    with hub.watch([batch_key(batch_id)]) as waiter:
        delay = 0.02
        while True:
            waiter.event.clear()  # before the look: an announcement from now on wakes it
            status = batches.batch_status(db(), batch_id, user)
            if status is not None and status["status"] in batches.FINAL_STATUSES:
                return status
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            waiter.event.wait(min(remaining, 1.0 if hub.subscribed(0) else delay))
            delay = min(delay * 2, 0.25)


@blp.route("/push", methods=["POST"])
class Push(MethodView):
    @require_user
    @blp.arguments(PushRequestSchema, error_status_code=400)
    @blp.response(202, BatchAcceptedSchema)
    @blp.alt_response(200, schema=BatchStatusSchema, description="Final status (Prefer: wait=N)")
    def post(self, body: dict[str, Any]) -> Any:
        """Queue a batch of mutations; with `Prefer: wait=N` wait up to N s for the result."""
        settings = resources().settings
        try:
            admit_batch(
                client_id=body["client_id"],
                mutations=body["mutations"],
                collections=resources().collections,
                max_mutations=settings.max_mutations_per_batch,
                can_write=lambda scope: membership.can_write(db(), g.user, scope),
            )
        except BatchRefused as exc:
            raise APIError(_REFUSAL_STATUS[exc.kind], exc.code, exc.message, exc.details) from None

        batch_id = uuid.uuid4().hex
        try:
            batches.submit_batch(
                db(),
                batch_id=batch_id,
                user=g.user,
                client_id=body["client_id"],
                mutations=body["mutations"],
            )
        except batches.ClientOwnedByAnotherUser:
            raise APIError(403, "forbidden", "client_id belongs to another user") from None
        publish_or_503(
            queues.publish_apply, batch_id, undo=lambda: batches.forget_batch(db(), batch_id)
        )

        BATCHES_ACCEPTED.inc()
        MUTATIONS_ACCEPTED.inc(len(body["mutations"]))
        note_seen(g.user, body["client_id"])
        wait = _prefer_wait()
        if wait:
            final = _wait_for_final(batch_id, g.user, wait)
            if final is not None:
                return jsonify(BatchStatusSchema().dump(final))
        return {"batch_id": batch_id, "status": batches.QUEUED}


@blp.route("/batches/<string:batch_id>", methods=["GET"])
class BatchStatus(MethodView):
    @require_user
    @blp.response(200, BatchStatusSchema)
    def get(self, batch_id: str) -> Any:
        """Status of a batch and the result of each of its mutations (submitter only)."""
        status = batches.batch_status(db(), batch_id, g.user) if len(batch_id) <= 64 else None
        if status is None:
            raise APIError(404, "not_found", "no such batch")
        return status


@blp.route("/pull", methods=["POST"])
class Pull(MethodView):
    @require_user
    @blp.arguments(PullRequestSchema, error_status_code=400)
    @blp.response(200, PullResponseSchema)
    @blp.doc(
        parameters=[
            {
                "in": "header",
                "name": "Prefer",
                "schema": {"type": "string", "example": "wait=30"},
                "description": "`wait=N` (N ≤ 60): a live pull; with nothing new it waits up "
                "to N s for a commit in one of its scopes (`Preference-Applied` says so).",
            }
        ]
    )
    def post(self, body: dict[str, Any]) -> Any:
        """Changes after each scope's checkpoint, in server order, a page per scope; with
        `Prefer: wait=N`, held until one of the scopes changes or N s pass."""
        _authorize_pull(body)
        note_seen(g.user, body["client_id"])
        wait = _prefer_wait(MAX_LIVE_WAIT_SECONDS)
        if not wait:
            return jsonify(PULL_REPLY.dump(_pull(body)))
        response = _live(body, wait)
        response.headers["Preference-Applied"] = f"wait={wait}"
        return response


def _authorize_pull(body: dict[str, Any]) -> None:
    for scope in body["scopes"]:
        if not membership.can_read(db(), g.user, scope):
            raise APIError(403, "forbidden", f"you may not read scope {scope!r}")
    known = resources().collections
    unknown = [c for c in body.get("collections") or [] if known.get(c) is None]
    if unknown:
        raise APIError(400, "unknown_collection", f"unknown collections: {', '.join(unknown)}")


def _pull(
    body: dict[str, Any], keep_unmoved: bool = False, shared: SharedReads | None = None
) -> dict[str, Any]:
    settings = resources().settings
    try:
        return pull(
            db(),
            client_id=body["client_id"],
            user=g.user,
            scopes=body["scopes"],
            collections=body.get("collections"),
            limit=body["limit"],
            now_ms=int(time.time() * 1000),
            horizon_seconds=settings.tombstone_horizon_seconds,
            keep_unmoved=keep_unmoved,
            shared=shared,
        )
    except ForeignClient:
        raise APIError(403, "forbidden", "client_id belongs to another user") from None
    except InvalidCheckpoint as exc:
        raise APIError(400, "invalid_checkpoint", str(exc)) from None
    except ResyncRequired as exc:
        raise APIError(
            410,
            "resync_required",
            f"the checkpoint of scope {exc.args[0]!r} is older than the tombstone horizon; "
            "pull it again from a null checkpoint",
        ) from None


def _has_news(reply: dict[str, Any]) -> bool:
    return any(page["changes"] or page["has_more"] for page in reply["scopes"].values())


def _live(body: dict[str, Any], wait: int) -> Response:
    """A live pull: answered at once when there is something new, else a `HeldPull`.

    The pull registers with the hub before its first read, so a commit from then on sets its
    event even while it reads (sync.live: no missed wake-up); it looks again only when woken.
    """
    hub = resources().live
    deadline = time.monotonic() + wait
    expires = token_expiry(bearer_token())
    waiter = hub.register(body["scopes"])
    try:
        # A look is trusted to have missed nothing only if the subscription was in place first;
        # if it was not (a fresh process, Redis away), the pull answers news at once all the
        # same, and otherwise looks again once subscribed.
        trusted = hub.subscribed(0)
        reply = _pull(body, keep_unmoved=True)
    except BaseException:
        hub.unregister(waiter)
        raise
    if _has_news(reply):
        hub.unregister(waiter)
        return jsonify(PULL_REPLY.dump(reply))
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    context = functools.partial(_request_context, app, request.environ, g.user)
    hold = functools.partial(_hold, body, reply, context, hub, waiter, trusted, deadline, expires)
    return HeldPull(hold, release=functools.partial(hub.unregister, waiter))


class HeldPull(Response):
    """The reply of a live pull with nothing new yet: it waits after Flask is done with the
    request.

    Flask hands this response to the WSGI server and pops the request context; the server then
    iterates it, and only then does it wait, decide the status and body, and call
    `start_response` (PEP 3333 allows that before the first body chunk). So a held pull keeps
    no Flask request state and parks a greenlet with a shallow stack: gevent copies a parked
    greenlet's C stack to the heap, so depth costs memory per held pull. The `after_request`
    hooks ran on this response (request id, security and CORS headers); its headers are kept.
    After the wait the answer is computed in a fresh request context of the same environ, and
    errors go through the app's error handlers as for any view.
    """

    def __init__(self, answer: Callable[[], dict[str, Any]], release: Callable[[], None]) -> None:
        super().__init__(mimetype="application/json")
        self._answer = answer
        self._release = weakref.finalize(self, release)  # even if the server never asks

    def __call__(self, environ: Any, start_response: Any) -> Any:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        # The iterator keeps this response alive, so its release runs after the wait.
        return _held_reply(app, environ, start_response, self)


def _held_reply(app: Any, environ: Any, start_response: Any, held: HeldPull) -> Iterator[bytes]:
    try:
        reply, error = held._answer(), None
    except Exception as exc:
        reply, error = None, exc
    finally:
        held._release()

    def respond() -> Response:
        with app.request_context(environ):
            if error is None:
                return jsonify(PULL_REPLY.dump(reply))
            return app.make_response(app.handle_user_exception(error))

    final = apart(respond)
    for name, value in final.headers.items():
        held.headers[name] = value
    start_response(final.status, list(held.headers.items()))
    yield final.get_data()


@contextlib.contextmanager
def _request_context(app: Any, environ: Any, user: str) -> Iterator[None]:
    """A held pull's request context for a look, pushed only while it reads (not while it
    waits), with the user its request was authenticated as."""
    with app.request_context(environ):
        g.user = user
        yield


def _hold(
    body: dict[str, Any],
    looked: dict[str, Any],
    context: Callable[[], contextlib.AbstractContextManager[None]],
    hub: CommitHub,
    waiter: Waiter,
    trusted: bool,
    deadline: float,
    expires: float,
) -> dict[str, Any]:
    """Wait until a commit in one of the pull's scopes shows it something, the deadline, the
    token's expiry (then 401) or a lost membership (then 403). It waits outside any Flask
    context and enters one (`context`) for each look.

    Every look keeps the checkpoints of scopes that did not move, so the last look (`looked`)
    is the answer when the time runs out: the same checkpoints, and a `last_mutation_id` that
    was true when read (the client never holds less than it says)."""

    def remaining() -> float:
        return min(deadline - time.monotonic(), expires - time.time())

    reason = "timeout"
    LIVE_HELD.inc()
    try:
        while remaining() > 0:
            if trusted:
                if not waiter.event.wait(remaining()):
                    continue  # the deadline or the expiry: the loop decides which
            elif not hub.subscribed(remaining()):
                continue  # still no subscription: nothing to wait on but the deadline
            if hub.closing:
                reason = "shutdown"
                break
            if time.time() >= expires:
                break
            waiter.event.clear()  # before the look: a commit from now on wakes it again
            trusted = hub.subscribed(0)
            looked = apart(functools.partial(_look, body, context, hub.pages))
            if _has_news(looked):
                if waiter.committed_at is not None:
                    LIVE_LATENCY.observe(max(0.0, time.time() - waiter.committed_at))
                LIVE_WAKEUPS.labels("commit").inc()
                return looked
            # The scope moved, but by nothing this pull shows (other collections, a tombstone
            # an initial sync skips): wait for the next commit.
    finally:
        LIVE_HELD.dec()
    if reason != "shutdown" and time.time() >= expires:
        raise APIError(401, "unauthorized", "the token expired while the pull waited")
    LIVE_WAKEUPS.labels(reason).inc()
    apart(functools.partial(_recheck, body, context))  # a lost membership ends it (403)
    return looked


def _look(
    body: dict[str, Any],
    context: Callable[[], contextlib.AbstractContextManager[None]],
    shared: SharedReads,
) -> dict[str, Any]:
    """A held pull's look after a wake (run `apart`, so the waiting greenlet stays shallow)."""
    with context():
        _authorize_pull(body)  # membership may have been lost meanwhile
        return _pull(body, keep_unmoved=True, shared=shared)


def _recheck(
    body: dict[str, Any], context: Callable[[], contextlib.AbstractContextManager[None]]
) -> None:
    with context():
        _authorize_pull(body)
