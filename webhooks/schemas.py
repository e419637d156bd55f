"""Shapes of what the service answers, and the check every parsed event must pass before it is queued."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate

from data_manager.collectors.tickets.integration import EventAction

_NO_CONTROL_CHARS = validate.Regexp(r"^[^\x00-\x1f\x7f]+$", error="must not contain control characters")


def _encodable(value: str) -> None:
    """A JSON string may hold lone surrogates (`"\\ud800"`); no key, file name or log line can."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("must be valid Unicode (no lone surrogates)") from None


class EventSchema(Schema):
    """A `TicketEvent` as an integration produced it: a bug there must not reach the queue."""

    ticket_id = fields.String(required=True, validate=[validate.Length(min=1, max=512), _NO_CONTROL_CHARS, _encodable])
    action = fields.String(required=True, validate=validate.OneOf([a.value for a in EventAction]))
    delivery_id = fields.String(load_default=None, allow_none=True, validate=[validate.Length(max=512), _encodable])


class JobSchema(Schema):
    ticket_id = fields.String(required=True)
    job_id = fields.String(required=True)
    outcome = fields.String(required=True)  # enqueued | coalesced | rerun_scheduled
    queue = fields.String(required=True)


class AcceptedSchema(Schema):
    status = fields.String(required=True)  # accepted | ignored
    system = fields.String(required=True)
    jobs = fields.List(fields.Nested(JobSchema), required=True)


class ErrorSchema(Schema):
    error = fields.String(required=True)  # a stable code: not_found, too_large, unsupported_media_type, ...
    message = fields.String(required=True)
    system = fields.String(load_default=None, allow_none=True)
    details = fields.Dict(load_default=None, allow_none=True)


class HealthSchema(Schema):
    status = fields.String(required=True)
    redis = fields.String(required=True)
    config = fields.String(required=True)
    systems = fields.List(fields.String(), required=True)
    workers = fields.Dict(keys=fields.String(), values=fields.Dict())  # name -> {alive, scheduler}
    problems = fields.List(fields.String())
