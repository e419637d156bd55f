"""Write a config.yaml for a test: the memory system on a file-backed store (plus any other systems), a private Redis DB."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

SECRET = "test-webhook-secret"


def write_config(
    directory: Path,
    redis_url: str,
    *,
    store_path: Path | None = None,
    memory: dict[str, Any] | None = None,
    workers: dict[str, Any] | None = None,
    resync: dict[str, Any] | None = None,
    webhooks: dict[str, Any] | None = None,
    key_prefix: str = "tickets",
    sources: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """`sources` adds other systems' sections, e.g. `{"jira": {"enabled": True, ...}}`."""
    store_path = store_path or directory / "upstream.json"
    memory_cfg = {"enabled": True, "webhook_secret": SECRET, "store_path": str(store_path), "resync_concurrency": 4}
    memory_cfg.update(memory or {})
    document = {
        "data_manager": {
            "data_path": str(directory / "data"),
            "sources": {"tickets": {"memory": memory_cfg, **(sources or {})}},
        },
        "redis": {"url": redis_url, "key_prefix": key_prefix, "socket_timeout": 1.0},
        "workers": {
            "max_attempts": 4,
            "retry_base_seconds": 1,
            "retry_max_seconds": 4,
            "lease_seconds": 5,
            **(workers or {}),
        },
        "resync": resync or {"interval_minutes": 0},
        "webhooks": webhooks or {"max_body_bytes": 4096},
    }
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path
