"""Sync endpoints (SPEC §2): push a batch, read its status, pull changes."""

from __future__ import annotations

import contextlib
import io
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
from api.greenlets import apart, waiting
from api.metrics import (
    BATCHES_ACCEPTED,
    LIVE_HELD,
    LIVE_LATENCY,
    LIVE_WAKEUPS,
    MUTATIONS_ACCEPTED,
)
from api.parking import parking
from api.queueing import publish_or_503
from api.resources import cache, db, resources
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
            with waiting():  # no turn held while it waits (api.greenlets)
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
                can_write=lambda scope: membership.can_write(db(), g.user, scope, cache()),
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
        if not membership.can_read(db(), g.user, scope, cache()):
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
    live = LivePull(body, reply, app, request.environ, g.user, hub, waiter, deadline, expires)
    live.trusted = trusted
    return HeldPull(live)


# What a look's request context needs of the request (routing, URLs, logs): the rest (the
# token, the body, the server's socket and reader) is not kept while a pull waits.
_LOOK_ENVIRON = (
    "REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_NAME", "SERVER_PORT",
    "SERVER_PROTOCOL", "HTTP_HOST", "REMOTE_ADDR", "HTTP_X_REQUEST_ID", "wsgi.url_scheme",
    "HTTP_ACCEPT_ENCODING",
)  # fmt: skip


class LivePull:
    """A live pull with nothing new at its first look: what it waits for, its looks, and its
    answer. It waits in a greenlet (`hold`) or, kept as data, in `api.parking`.

    Every look keeps the checkpoints of scopes that did not move, so the last look (`looked`)
    is the answer when the time runs out: the same checkpoints, and a `last_mutation_id` that
    was true when read (the client never holds less than it says). It keeps the request's
    environ's routing part only (`_LOOK_ENVIRON`): looks run in a fresh request context of it,
    with the user the request was authenticated as."""

    def __init__(
        self,
        body: dict[str, Any],
        looked: dict[str, Any],
        app: Any,
        environ: dict[str, Any],
        user: str,
        hub: CommitHub,
        waiter: Waiter,
        deadline: float,
        expires: float,
    ) -> None:
        self.body = body
        self.looked = looked
        self.app = app
        self.environ = {k: environ[k] for k in _LOOK_ENVIRON if k in environ}
        self.user = user
        self.hub = hub
        self.waiter = waiter
        self.deadline = deadline  # monotonic
        self.expires = expires  # wall clock: the token's expiry
        self.trusted = False  # the last look was made with the hub subscribed
        self._held = False

    def remaining(self) -> float:
        return min(self.deadline - time.monotonic(), self.expires - time.time())

    def due(self) -> str | None:
        """Why the wait is over without news ("shutdown", "timeout": the deadline or the
        token's expiry), or None."""
        if self.hub.closing:
            return "shutdown"
        if self.remaining() <= 0:
            return "timeout"
        return None

    def held(self) -> None:
        """It waits from now on (counted in the held-pulls gauge until `release`)."""
        self._held = True
        LIVE_HELD.inc()

    def release(self) -> None:
        self.hub.unregister(self.waiter)
        if self._held:
            self._held = False
            LIVE_HELD.dec()

    @contextlib.contextmanager
    def context(self) -> Iterator[None]:
        """A request context for a look, pushed only while it reads (not while it waits)."""
        environ = {**self.environ, "wsgi.input": io.BytesIO()}
        with self.app.request_context(environ):
            g.user = self.user
            yield

    def look(self) -> dict[str, Any] | None:
        """After a wake: the answer when the pull now shows something, else None (it waits for
        the next commit: the scope moved by nothing it shows, e.g. another collection)."""
        self.waiter.event.clear()  # before the look: a commit from now on wakes it again
        self.trusted = self.hub.subscribed(0)
        looked = apart(self._look)
        if not _has_news(looked):
            self.looked = looked
            return None
        if self.waiter.committed_at is not None:
            LIVE_LATENCY.observe(max(0.0, time.time() - self.waiter.committed_at))
        LIVE_WAKEUPS.labels("commit").inc()
        return looked

    def _look(self) -> dict[str, Any]:
        with self.context():
            _authorize_pull(self.body)  # membership may have been lost meanwhile
            return _pull(self.body, keep_unmoved=True, shared=self.hub.pages)

    def end(self, reason: str) -> dict[str, Any]:
        """The answer when the wait is over without news: the last look, unless the token
        expired (401) or the membership was lost meanwhile (403)."""
        if reason != "shutdown" and time.time() >= self.expires:
            raise APIError(401, "unauthorized", "the token expired while the pull waited")
        LIVE_WAKEUPS.labels(reason).inc()
        apart(self._recheck)
        return self.looked

    def _recheck(self) -> None:
        with self.context():
            _authorize_pull(self.body)

    def hold(self) -> dict[str, Any]:
        """Wait in this greenlet (or thread) for news, the deadline, the token's expiry or the
        process's shutdown; the answer."""
        self.held()
        try:
            while self.due() is None:
                if self.trusted:
                    if not self.waiter.event.wait(self.remaining()):
                        continue  # the deadline or the expiry: `due` says which
                elif not self.hub.subscribed(self.remaining()):
                    continue  # still no subscription: nothing to wait on but the deadline
                if self.due() is not None:
                    break
                news = self.look()
                if news is not None:
                    return news
        finally:
            self.release()
        return self.end(self.due() or "timeout")

    def respond(self, step: Callable[[], dict[str, Any]]) -> Response:
        """The final response: `step()`'s reply, or the error it raised through the app's
        error handlers, in a fresh request context."""
        try:
            reply, error = step(), None
        except Exception as exc:
            reply, error = None, exc

        def make() -> Response:
            with self.context():
                if error is None:
                    response = jsonify(PULL_REPLY.dump(reply))
                else:
                    response = self.app.make_response(self.app.handle_user_exception(error))
                return resources(self.app).compress.after_request(response)

        return apart(make)


_BODY_HEADERS = {"content-type", "content-length", "content-encoding"}


class HeldPull(Response):
    """The reply of a live pull with nothing new yet: it waits after Flask is done with the
    request.

    Flask hands this response to the WSGI server and pops the request context. Then the pull
    is parked (`api.parking`: the connection is taken over and the pull kept as data, its
    greenlet ends), or, where it cannot be, it waits when the server iterates the response,
    and only then decides the status and body and calls `start_response` (PEP 3333 allows
    that before the first body chunk). The `after_request` hooks ran on this response (request
    id, security and CORS headers); its headers are kept.
    """

    def __init__(self, live: LivePull) -> None:
        super().__init__(mimetype="application/json")
        self.live = live
        self._release = weakref.finalize(self, live.release)  # even if the server never asks

    def kept_headers(self) -> list[tuple[str, str]]:
        """The headers the hooks gave this response, less those of its (empty) body: the
        final response's body describes itself (type, length, encoding)."""
        return [(k, v) for k, v in self.headers.items() if k.lower() not in _BODY_HEADERS]

    def __call__(self, environ: Any, start_response: Any) -> Any:
        if parking.park(environ, self.live, self.kept_headers()):
            self._release.detach()  # the parked pull releases itself when it answers
            # gunicorn's way to close a connection without writing to it; the parked pull
            # answers on its own duplicate of the socket.
            raise StopIteration
        return _held_reply(start_response, self)


def _held_reply(start_response: Any, held: HeldPull) -> Iterator[bytes]:
    final = held.live.respond(held.live.hold)
    headers = dict(held.kept_headers())
    headers.update(final.headers.items())
    start_response(final.status, list(headers.items()))
    yield final.get_data()
