"""Pytest fixtures shared by the unit and integration tests of the pipeline (imported by their conftests)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from data_manager.config import AppConfig, load_config
from tests.pipeline_support import redis_db
from tests.pipeline_support.configs import write_config


@pytest.fixture(scope="session")
def redis_database() -> Iterator[int]:
    if not redis_db.available():
        pytest.skip(f"no Redis at {redis_db.BASE_URL}")
    with redis_db.claim_database() as db:
        yield db
        redis.Redis.from_url(redis_db.url_for(db)).flushdb()


@pytest.fixture
def redis_url(redis_database: int) -> str:
    """A freshly flushed private database for this test."""
    url = redis_db.url_for(redis_database)
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture(scope="module")
def module_redis_url(redis_database: int) -> str:
    """The private database flushed once, for a module whose tests share long-running processes."""
    url = redis_db.url_for(redis_database)
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture
def redis_conn(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def config_path(tmp_path: Path, redis_url: str) -> Path:
    return write_config(tmp_path, redis_url)


@pytest.fixture
def app_config(config_path: Path) -> AppConfig:
    return load_config(config_path)
