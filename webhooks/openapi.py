"""`GET /openapi.json`: the HTTP API as an OpenAPI 3 document, built for the running app's systems.

Written by hand next to the marshmallow shapes in `schemas.py` (the tests fuzz the endpoints from
this document and validate every answer against it, so the two cannot drift apart unnoticed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

_STRING = {"type": "string"}
_ERROR_CODES = {
    "400": "Malformed: the body, an event or a ticket id breaks the rules (`details` names the problem)",
    "401": "Authentication failed (or no `webhook_secret` and no `webhook_unauthenticated: true`)",
    "404": "No enabled ticket system of that name",
    "405": "Method not allowed",
    "413": "Body over `webhooks.max_body_bytes` (also when chunked)",
    "415": "Content type the system does not send",
}


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _json("Error")}


def _unavailable() -> dict[str, Any]:
    return {
        "description": "The job queue (Redis) did not answer within the deadline: retry later",
        "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
        "content": _json("Error"),
    }


def openapi_document(systems: Iterable[str], content_types: Mapping[str, Iterable[str]]) -> dict[str, Any]:
    """`systems`: the enabled instance names; `content_types`: the media types each accepts."""
    names = sorted(systems)
    media = sorted({m for name in names for m in content_types.get(name, ("application/json",))}) or [
        "application/json"
    ]
    event_body = {
        "type": "object",
        "description": "The ticket system's own webhook payload; only the ticket id in it matters.",
        # Any JSON value: the system's integration decides what it accepts (the memory system's shape).
        "properties": {"ticket_id": {}, "action": {}, "delivery_id": {}},
        "additionalProperties": True,
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "ticket-collector webhooks",
            "version": "1",
            "description": "Ticket systems push change webhooks; each event queues one coalesced sync job.",
        },
        "paths": {
            "/webhooks/{system}": {
                "post": {
                    "operationId": "receiveWebhook",
                    "summary": "A change webhook from a ticket system",
                    "parameters": [
                        {
                            "name": "system",
                            "in": "path",
                            "required": True,
                            "description": "The ticket system's instance name in config.yaml",
                            "schema": {"type": "string", "enum": names} if names else _STRING,
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {m: {"schema": event_body if "json" in m else _STRING} for m in media},
                    },
                    "responses": {
                        "202": {"description": "Every event is safely queued", "content": _json("Accepted")},
                        "200": {"description": "Authenticated, nothing we act on", "content": _json("Accepted")},
                        **{code: _error(text) for code, text in _ERROR_CODES.items()},
                        "503": _unavailable(),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "health",
                    "summary": "Whether the queue is reachable and which systems are enabled",
                    "responses": {
                        "200": {"description": "Healthy", "content": _json("Health")},
                        "503": {"description": "Redis unreachable or a worker unhealthy", "content": _json("Health")},
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "Prometheus text format",
                            "content": {"text/plain": {"schema": _STRING}},
                        },
                        "503": _unavailable(),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "Job": {
                    "type": "object",
                    "required": ["ticket_id", "job_id", "outcome", "queue"],
                    "properties": {
                        "ticket_id": _STRING,
                        "job_id": _STRING,
                        "outcome": {"type": "string", "enum": ["enqueued", "coalesced", "rerun_scheduled"]},
                        "queue": _STRING,
                    },
                },
                "Accepted": {
                    "type": "object",
                    "required": ["status", "system", "jobs"],
                    "properties": {
                        "status": {"type": "string", "enum": ["accepted", "ignored"]},
                        "system": _STRING,
                        "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error", "message"],
                    "properties": {
                        "error": {"type": "string", "description": "A stable code: not_found, too_large, ..."},
                        "message": _STRING,
                        "system": _STRING,
                        "details": {"type": "object"},
                    },
                },
                "Health": {
                    "type": "object",
                    "required": ["status", "redis", "config", "systems"],
                    "properties": {
                        "status": {"type": "string", "enum": ["ok", "degraded", "unavailable"]},
                        "redis": _STRING,
                        "config": _STRING,
                        "systems": {"type": "array", "items": _STRING},
                        "workers": {
                            "type": "object",
                            "description": "Leased workers: {name: {alive, scheduler: running|standby|stopped|off}}",
                        },
                        "problems": {"type": "array", "items": _STRING},
                    },
                },
            }
        },
    }
