"""Everything the pipeline derives from config: Redis, queue and key names, retry and lease settings.

Key names all start with the configured `redis.key_prefix`, and queue names do too, so several
deployments can share one Redis database without seeing each other's jobs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from data_manager.config import RedisSchema, ResyncSchema, WorkersSchema

# One source of defaults: the config schemas (what an empty config section loads as).
_REDIS = RedisSchema().load({})
_WORKERS = WorkersSchema().load({})
_RESYNC = ResyncSchema().load({})
_SAFE = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True)
class PipelineSettings:
    redis_url: str = _REDIS["url"]
    key_prefix: str = _REDIS["key_prefix"]
    socket_timeout: float = _REDIS["socket_timeout"]
    max_attempts: int = _WORKERS["max_attempts"]
    retry_base_seconds: float = _WORKERS["retry_base_seconds"]
    retry_max_seconds: float = _WORKERS["retry_max_seconds"]
    job_timeout_seconds: int = _WORKERS["job_timeout_seconds"]
    lease_seconds: int = _WORKERS["lease_seconds"]
    resync_interval_minutes: int = _RESYNC["interval_minutes"]

    @classmethod
    def from_config(cls, config: Any) -> PipelineSettings:
        """From an `AppConfig` (its `redis`, `workers` and `resync` sections)."""
        redis_cfg, workers_cfg, resync_cfg = config.redis, config.workers, config.resync
        return cls(
            redis_url=redis_cfg["url"],
            key_prefix=redis_cfg.get("key_prefix") or cls.key_prefix,
            socket_timeout=float(redis_cfg.get("socket_timeout", cls.socket_timeout)),
            max_attempts=int(workers_cfg.get("max_attempts", cls.max_attempts)),
            retry_base_seconds=float(workers_cfg.get("retry_base_seconds", cls.retry_base_seconds)),
            retry_max_seconds=float(workers_cfg.get("retry_max_seconds", cls.retry_max_seconds)),
            job_timeout_seconds=int(workers_cfg.get("job_timeout_seconds", cls.job_timeout_seconds)),
            lease_seconds=int(workers_cfg.get("lease_seconds", cls.lease_seconds)),
            resync_interval_minutes=int(resync_cfg.get("interval_minutes", cls.resync_interval_minutes)),
        )

    @property
    def names(self) -> Names:
        return Names(self.key_prefix)


@dataclass(frozen=True)
class Names:
    """Redis key and RQ queue names for one deployment (one key prefix)."""

    prefix: str

    @property
    def safe_prefix(self) -> str:
        return _SAFE.sub("_", self.prefix) or "tickets"

    @property
    def live_queue(self) -> str:
        """Jobs from webhooks: always dequeued before bulk work."""
        return f"{self.safe_prefix}-live"

    @property
    def bulk_queue(self) -> str:
        """Jobs from `resync --enqueue`, the periodic resync and requeues of bulk jobs."""
        return f"{self.safe_prefix}-bulk"

    @property
    def queues(self) -> tuple[str, str]:
        return (self.live_queue, self.bulk_queue)

    def ticket_state(self, ticket_key: str) -> str:
        return f"{self.prefix}:sync:{ticket_key}"

    @property
    def metrics(self) -> str:
        return f"{self.prefix}:metrics"

    def worker_lease(self, worker_name: str) -> str:
        return f"{self.prefix}:lease:{worker_name}"

    @property
    def leased_workers(self) -> str:
        return f"{self.prefix}:leased-workers"

    def lock(self, name: str) -> str:
        return f"{self.prefix}:lock:{name}"

    def lost_job(self, job_id: str) -> str:
        """When a job was first seen taken off its queue but not started."""
        return f"{self.prefix}:lost:{job_id}"

    def periodic_slot(self, slot: int) -> str:
        return f"{self.prefix}:periodic-resync:{slot}"
