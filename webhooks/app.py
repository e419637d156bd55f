"""Flask app factory for the webhook service.

Per request, in this order: unknown or disabled system (404), body too large (413), wrong content
type (415), authentication by the system's integration (401), parsing and validation (400), then
one coalesced job per ticket (202 with the job ids). An authenticated event kind we do not act on
is acknowledged with 200 so the sender does not retry it. Nothing is queued for a refused request.
If Redis does not answer, the answer is 503 with Retry-After, never a 202 without a queued job:
every Redis call a request makes shares one deadline (`REDIS_BUDGET_SECONDS`), so however many
round trips a request needs, it answers within two seconds of any Redis trouble.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from gunicorn.http.errors import ParseException
from marshmallow import ValidationError
from redis import Redis
from redis.exceptions import RedisError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from data_manager.collectors.tickets.errors import WebhookError
from data_manager.collectors.tickets.integration import EventAction, TicketEvent, TicketIntegration, WebhookRequest
from data_manager.config import AppConfig, config_path, load_config
from service.coalesce import Coalescer
from service.connection import Role
from service.deadline import end_deadline, start_deadline
from service.logs import log_event
from service.metrics import Metrics
from service.runtime import Runtime
from service.settings import PipelineSettings
from service.worker_health import scheduler_problems, worker_health
from webhooks import metrics as prometheus
from webhooks.openapi import openapi_document
from webhooks.schemas import AcceptedSchema, ErrorSchema, EventSchema, HealthSchema

log = logging.getLogger("tickets.webhooks")
REDIS_BUDGET_SECONDS = 1.5  # all Redis calls of one request together; the answer must come within 2 s
RETRY_AFTER_SECONDS = 5
UNKNOWN_SYSTEM_LABEL = "_unknown"  # never a label from the URL: that would let anyone create series

_accepted = AcceptedSchema()
_error = ErrorSchema()
_event = EventSchema()
_health = HealthSchema()


@dataclass
class WebhookService:
    """What a request needs, taken from the process's `Runtime` (the composition root) once."""

    config: AppConfig
    redis: Redis
    integrations: dict[str, TicketIntegration]
    settings: PipelineSettings
    coalescer: Coalescer
    metrics: Metrics


def _service() -> WebhookService:
    service: WebhookService = current_app.extensions["tickets"]
    return service


def error_response(status: int, code: str, message: str, *, system: str | None = None, **details: Any) -> Response:
    body = _error.dump({"error": code, "message": message, "system": system, "details": details or None})
    response = jsonify({k: v for k, v in body.items() if v is not None})
    response.status_code = status
    return response


def accepts_content_type(integration: TicketIntegration, mimetype: str) -> bool:
    """JSON by default; an integration whose system sends something else says so in `webhook_content_types`."""
    allowed = integration.webhook_content_types
    mimetype = mimetype.lower()
    if mimetype in allowed:
        return True
    return "application/json" in allowed and mimetype.startswith("application/") and mimetype.endswith("+json")


_ACTIONS = frozenset(action.value for action in EventAction)
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _plainly_valid(event: TicketEvent) -> bool:
    """What `EventSchema` checks, without building a schema run per event (the webhook's hot path)."""
    ticket_id, delivery_id = event.ticket_id, event.delivery_id
    return (
        isinstance(ticket_id, str)
        and 1 <= len(ticket_id) <= 512
        and not _CONTROL_CHARS.search(ticket_id)
        and _encodable(ticket_id)
        and getattr(event.action, "value", event.action) in _ACTIONS
        and (
            delivery_id is None
            or (isinstance(delivery_id, str) and len(delivery_id) <= 512 and _encodable(delivery_id))
        )
    )


def validate_events(integration: TicketIntegration, events: list[TicketEvent]) -> list[TicketEvent]:
    """Refuse events an integration should never have produced, and ids that break the system's own
    rule (`ticket_id_pattern`); keep one per ticket, in order."""
    seen: dict[str, TicketEvent] = {}
    pattern = integration.ticket_id_pattern
    for index, event in enumerate(events):
        if not isinstance(event, TicketEvent):
            raise WebhookValidationError(f"event {index} is not a TicketEvent", {})
        if not _plainly_valid(event):  # the schema runs only to word what is wrong
            try:
                _event.load(
                    {
                        "ticket_id": event.ticket_id,
                        "action": getattr(event.action, "value", event.action),
                        "delivery_id": event.delivery_id,
                    }
                )
            except ValidationError as exc:
                raise WebhookValidationError(f"event {index} is invalid", {str(index): exc.messages}) from None
        if not pattern.fullmatch(event.ticket_id):
            raise WebhookValidationError(
                f"event {index}: {event.ticket_id[:80]!r} is not a {integration.system} ticket id",
                {str(index): {"ticket_id": [f"must match {pattern.pattern}"]}},
            )
        seen.setdefault(event.ticket_id, event)
    return list(seen.values())


class WebhookValidationError(Exception):
    def __init__(self, message: str, details: dict[str, Any]) -> None:
        self.message = message
        self.details = details
        super().__init__(message)


def read_body(limit: int) -> bytes:
    """The raw body, refusing more than `limit` bytes even without a Content-Length.

    (Werkzeug's own limit silently truncates a chunked body at the limit; a truncated body would
    then fail as "bad signature", which is the wrong thing to tell the sender.)
    """
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = request.stream.read(min(65536, limit + 1 - total))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise RequestEntityTooLarge()


bp = Blueprint("webhooks", __name__)


@bp.before_app_request
def _start_redis_deadline() -> None:
    g.redis_deadline = start_deadline(REDIS_BUDGET_SECONDS)


@bp.teardown_app_request
def _end_redis_deadline(_exc: BaseException | None) -> None:
    token = g.pop("redis_deadline", None)
    if token is not None:
        end_deadline(token)


@bp.post("/webhooks/<system>")
def receive(system: str) -> Response | tuple[Response, int]:
    service = _service()
    integration = service.integrations.get(system)
    if integration is None:
        service.metrics.incr("rejected", UNKNOWN_SYSTEM_LABEL, "not_found")
        enabled = ", ".join(sorted(service.integrations)) or "none"
        return error_response(404, "not_found", f"no enabled ticket system called {system!r} (enabled: {enabled})")
    service.metrics.incr("received", system)

    limit = service.config.webhooks["max_body_bytes"]
    if request.content_length is not None and request.content_length > limit:
        return reject(system, 413, "too_large", f"the body is larger than {limit} bytes")
    if not accepts_content_type(integration, request.mimetype or ""):
        allowed = ", ".join(integration.webhook_content_types)
        return reject(
            system,
            415,
            "unsupported_media_type",
            f"Content-Type must be {allowed}, not {request.mimetype or 'missing'!r}",
        )
    try:
        body = read_body(limit)
    except RequestEntityTooLarge:  # no Content-Length (chunked): the limit is enforced while reading
        return reject(system, 413, "too_large", f"the body is larger than {limit} bytes")
    except (OSError, ParseException) as exc:  # gunicorn's body reader: broken chunked encoding, body cut short
        return reject(system, 400, "malformed_body", f"the request body could not be read: {type(exc).__name__}")

    webhook = WebhookRequest(body=body, headers=dict(request.headers), query=request.args.to_dict())
    try:
        integration.authenticate_webhook(webhook)
        events = validate_events(integration, integration.parse_webhook(webhook))
    except WebhookError as exc:
        return reject(system, exc.http_status, exc.reason, exc.message)
    except WebhookValidationError as exc:
        return reject(system, 400, "invalid_event", exc.message, **exc.details)

    if not events:
        service.metrics.incr("ignored", system)
        return _reply(integration, events) or (
            jsonify(_accepted.dump({"status": "ignored", "system": system, "jobs": []})),
            200,
        )

    jobs = []
    for event in events:
        result = service.coalescer.submit(system, event.ticket_id, delete=event.action is EventAction.DELETE)
        jobs.append(
            {
                "ticket_id": event.ticket_id,
                "job_id": result.job_id,
                "outcome": result.outcome.value,
                "queue": result.queue,
            }
        )
        log_event(
            log,
            "webhook_event",
            logging.DEBUG,
            system=system,
            ticket=event.ticket_id,
            job=result.job_id,
            outcome=result.outcome.value,
            delivery=event.delivery_id,
        )
    # The `AcceptedSchema` shape (documented in /openapi.json), built directly: every value is already a string.
    return _reply(integration, events) or (jsonify({"status": "accepted", "system": system, "jobs": jobs}), 202)


def _reply(integration: TicketIntegration, events: list[TicketEvent]) -> Response | None:
    """The system's own answer (e.g. Salesforce's SOAP Ack), once every event is queued; None: our JSON."""
    reply = integration.webhook_reply(events)
    if reply is None:
        return None
    return Response(reply.body, status=reply.status, content_type=reply.content_type)


def reject(system: str, status: int, code: str, message: str, **details: Any) -> Response:
    _service().metrics.incr("rejected", system, code)
    log_event(log, "webhook_rejected", logging.INFO, system=system, status=status, reason=code, message=message)
    return error_response(status, code, message, system=system, **details)


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    """503 when Redis does not answer (within the request's deadline); "degraded" (still 200: the web
    service itself is fine) when a worker's scheduler is not running."""
    service = _service()
    workers: dict[str, Any] = {}
    problems: list[str] = []
    try:
        service.redis.ping()
        found = worker_health(service.redis, service.settings.names)
        workers = {w.name: {"alive": w.alive, "scheduler": w.scheduler} for w in found}
        problems = scheduler_problems(found)
        redis_state, status = "ok", 200
    except RedisError as exc:
        redis_state, status = f"unreachable: {type(exc).__name__}", 503
    body = _health.dump(
        {
            "status": "unavailable" if status != 200 else "degraded" if problems else "ok",
            "redis": redis_state,
            "config": service.config.source_path or "(in memory)",
            "systems": sorted(service.integrations),
            "workers": workers,
            "problems": problems,
        }
    )
    return jsonify(body), status


@bp.get("/metrics")
def metrics() -> Response:
    service = _service()
    service.metrics.flush()
    payload = prometheus.render(service.redis, service.settings.names)
    return Response(payload, mimetype="text/plain; version=0.0.4; charset=utf-8")


@bp.get("/openapi.json")
def openapi() -> Response:
    integrations = _service().integrations
    return jsonify(openapi_document(integrations, {name: i.webhook_content_types for name, i in integrations.items()}))


def _redis_unavailable(exc: RedisError) -> Response:
    log_event(log, "redis_unavailable", logging.ERROR, path=request.path, error=type(exc).__name__)
    response = error_response(503, "queue_unavailable", "the job queue (Redis) is not reachable; retry later")
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _http_error(exc: HTTPException) -> Response:
    response = error_response(exc.code or 500, (exc.name or "error").lower().replace(" ", "_"), exc.description or "")
    for name, value in exc.get_headers():  # e.g. 405's Allow (RFC 9110); our body sets its own type
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def create_app(config: AppConfig | str | os.PathLike[str] | None = None, *, redis: Redis | None = None) -> Flask:
    """Build the app from an `AppConfig` or a config path (default: `TICKETS_CONFIG`, else ./config.yaml)."""
    if not isinstance(config, AppConfig):
        config = load_config(config_path(config))
    runtime = Runtime(config, role=Role.WEB, redis=redis)
    runtime.require_current_schema()
    app = Flask("webhooks")
    app.config["MAX_CONTENT_LENGTH"] = config.webhooks["max_body_bytes"]
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["tickets"] = WebhookService(
        config,
        runtime.redis,
        {name: runtime.manager.integration(name) for name in runtime.manager.systems},
        runtime.settings,
        runtime.coalescer,
        runtime.metrics,
    )
    app.register_blueprint(bp)
    app.register_error_handler(RedisError, _redis_unavailable)
    app.register_error_handler(HTTPException, _http_error)
    return app
