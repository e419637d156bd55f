"""The webhook service: `POST /webhooks/<system>`, `GET /healthz`, `GET /metrics` (Flask app factory)."""

from webhooks.app import create_app

__all__ = ["create_app"]
