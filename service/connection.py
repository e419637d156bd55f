"""Redis clients with bounded waits: a webhook must answer 503 in under two seconds when Redis is down."""

from __future__ import annotations

from enum import Enum

from redis import Redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry

from service.deadline import DeadlineConnection

try:  # redis-py 7+: without this, every new connection reads the package's metadata from disk (10-25 ms),
    # which a forking worker pays in every job process.
    from redis.driver_info import DriverInfo

    _DRIVER: dict[str, object] = {"driver_info": DriverInfo()}
except ImportError:  # older redis-py computes its version once, at import
    _DRIVER = {}


class Role(str, Enum):
    """Who a process is; decides how long its Redis commands may wait (the one timeout policy)."""

    WEB = "web"  # answers HTTP: a stalled Redis must turn into a 503 within two seconds
    WORKER = "worker"  # RQ workers, jobs and their maintenance: RQ's own commands need a longer wait
    CLI = "cli"  # `tickets` commands: they run the same RQ operations as the workers
    PROBE = "probe"  # a reachability check (`tickets check-config`): answer quickly

    def socket_timeout(self, configured: float) -> float:
        """`redis.socket_timeout` as this role may use it."""
        if self in (Role.WEB, Role.PROBE):
            return min(configured, 1.0)
        return max(configured, 5.0)


def redis_client(
    url: str, *, socket_timeout: float = 1.0, connect_timeout: float | None = None, retries: int = 1
) -> Redis:
    """A client that gives up quickly.

    Only refused/reset connections are retried (once, after 50 ms, to ride out a restart blip);
    timeouts are not, so one stalled command costs at most `socket_timeout`. RQ raises the socket
    timeout of a worker's own connection above its blocking-dequeue timeout by itself. Inside
    `service.deadline.redis_deadline`, all calls together end by that one deadline.
    """
    return Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout if connect_timeout is not None else min(socket_timeout, 0.5),
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), retries, supported_errors=(RedisConnectionError,)),
        retry_on_timeout=False,
        health_check_interval=30,
        **({"connection_class": DeadlineConnection} if url.startswith("redis://") else {}),
        **_DRIVER,
    )


def redacted_url(url: str) -> str:
    """The Redis URL without its password, for logs and `check-config`."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0] if ":" in credentials else ""
    return f"{scheme}://{user + ':' if user else ''}***@{host}"
