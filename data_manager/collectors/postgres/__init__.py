"""The PostgreSQL ticket store: `PostgresPersistence` (see `store`), its migrations and its pool."""

from data_manager.collectors.postgres.pool import PoolSettings
from data_manager.collectors.postgres.store import PostgresPersistence
from data_manager.collectors.postgres.url import redact_url

__all__ = ["PoolSettings", "PostgresPersistence", "redact_url"]
