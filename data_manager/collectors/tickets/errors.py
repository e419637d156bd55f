"""Error types shared by the model, the integrations and the pipeline.

The pipeline decides what to do with a failure only by its class: a
`TransientError` is retried, a `PermanentError` fails the job at once, and
`TicketGone` means "delete our copy". Integrations translate their system's
HTTP answers into these so the pipeline never needs to know which system spoke.
"""

from __future__ import annotations


class TicketError(Exception):
    """Base of every error this package raises on purpose."""


class TicketNotFound(TicketError, KeyError):
    """The ticket does not exist (in a backend, or in persistence)."""

    def __init__(self, ticket_id: str, where: str = "") -> None:
        self.ticket_id = ticket_id
        self.where = where
        super().__init__(ticket_id)

    def __str__(self) -> str:  # KeyError would repr() the argument
        suffix = f" in {self.where}" if self.where else ""
        return f"ticket {self.ticket_id!r} not found{suffix}"


class TicketGone(TicketNotFound):
    """Upstream says the ticket no longer exists (deleted, or moved out of reach)."""


class NoBackendError(TicketError, RuntimeError):
    """A `Ticket` operation ran before any backend was registered."""


class UnknownFieldError(TicketError, ValueError):
    """`update` named a field the model does not have; nothing was changed."""


class ConfigError(TicketError, ValueError):
    """The configuration is invalid; the message names the key path."""

    def __init__(self, message: str, key_path: str = "") -> None:
        self.key_path = key_path
        super().__init__(f"{key_path}: {message}" if key_path else message)


class IntegrationError(TicketError):
    """A ticket system answered with an error (or did not answer)."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        self.status = status
        self.retry_after = retry_after
        super().__init__(message)


class TransientError(IntegrationError):
    """Worth retrying later: connection errors, timeouts, 429, 5xx."""


class PermanentError(IntegrationError):
    """Retrying will not help: 400, 401, 403, bad configuration."""


class ReadOnlySystemError(PermanentError):
    """A write (create, update, comment) was asked of a system its integration declares read-only."""

    def __init__(self, name: str, operation: str) -> None:
        self.name = name
        self.operation = operation
        super().__init__(f"ticket system {name!r} is read-only: it cannot {operation}")


class CredentialsRefused(PermanentError):
    """The system did not accept our credentials (or answers as the anonymous user).

    Raised by `TicketIntegration.verify_credentials`; nothing may be removed on the strength of a
    "not found" while this holds, because an anonymous caller is told "not found" for everything.
    """

    def __init__(self, message: str, *, status: int | None = 401) -> None:
        super().__init__(message, status=status)


class WebhookError(TicketError):
    """A webhook request was refused; `http_status` says how to answer it."""

    http_status = 400
    reason = "invalid"

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class WebhookAuthError(WebhookError):
    """Missing or wrong signature / token."""

    http_status = 401
    reason = "unauthenticated"


class WebhookPayloadError(WebhookError):
    """The body is not JSON, or not the shape the system sends."""

    http_status = 400
    reason = "malformed"
