"""Sign memory-system webhooks the way the memory integration checks them."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from data_manager.collectors.tickets.integrations.memory import SIGNATURE_HEADER
from tests.pipeline_support.configs import SECRET


def signed(payload: dict[str, Any] | bytes, secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {"Content-Type": "application/json", SIGNATURE_HEADER: f"sha256={digest}"}
