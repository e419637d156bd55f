"""The flaky upstream run: 30 % of fetches fail with 429/503 (some with Retry-After), a few with a
permanent 401.

Promise: every ticket with transient failures persisted without a human; the permanent ones in
`tickets failed list` with the reason, and stored after `tickets failed requeue`; no secret in any
log, CLI output or Redis value.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

from data_manager.collectors.tickets.model import TicketData
from tests.faults.support import FaultStack, PrivateRedis, elapsed, figure, wait_until
from tests.pipeline_support.configs import SECRET
from tests.pipeline_support.processes import cli

pytestmark = pytest.mark.faults
TICKETS = 100


def test_flaky_upstream_is_healed_by_retries_and_permanent_failures_wait_for_requeue(tmp_path: Path) -> None:
    server = PrivateRedis(tmp_path)
    stack = FaultStack(
        tmp_path, server.url, workers={"retry_base_seconds": 0.3, "retry_max_seconds": 1, "max_attempts": 6}
    )
    rng = random.Random(7)
    try:
        ids = [stack.upstream.create(TicketData(title=f"flaky {n}")) for n in range(TICKETS)]
        flaky = rng.sample(ids, TICKETS * 30 // 100)
        permanent = [t for t in ids if t not in flaky][:3]
        for ticket_id in flaky:
            status = rng.choice([429, 503])
            stack.upstream.inject_fault(
                ticket_id,
                fail_next=rng.randint(1, 2),
                error="transient",
                status=status,
                retry_after=0.5 if status == 429 else None,
            )
        for ticket_id in permanent:
            stack.upstream.inject_fault(ticket_id, fail_next=1, error="permanent", status=401, message="401 refused")
        stack.web()
        stack.worker()
        stack.worker()
        started = time.monotonic()
        assert all(stack.post(t).status_code == 202 for t in ids)
        healthy = [t for t in ids if t not in permanent]
        wait_until(lambda: stack.stored_count(healthy) == len(healthy), 90, "every flaky ticket stored", stack)
        took = elapsed(started)
        wait_until(lambda: stack.failed_count() == len(permanent), 20, "the permanent failures listed", stack)
        listed = json.loads(cli(stack.config, "failed", "list", "--json").stdout)
        assert sorted(f["ticket_id"] for f in listed) == sorted(permanent)
        assert all("401" in f["error"] for f in listed)

        requeue = cli(stack.config, "failed", "requeue", "--all")
        assert requeue.returncode == 0, requeue.stderr
        wait_until(lambda: stack.stored_count(permanent) == len(permanent), 30, "requeued tickets stored", stack)

        status = cli(stack.config, "status")
        texts = [stack.logs(), requeue.stdout, requeue.stderr, status.stdout, status.stderr]
        texts += [repr(stack.redis.dump(k)) for k in stack.redis.keys("*")]
        leaks = sum(SECRET in text for text in texts)
        figure("flaky", "persisted without a human", f"{stack.stored_count(healthy)}/{len(healthy)}", "all")
        figure("flaky", "time to persist (30 % flaky)", took, "")
        figure(
            "flaky", "permanent failures listed / stored after requeue", f"{len(listed)} / {len(permanent)}", "3 / 3"
        )
        figure("flaky", "secrets in logs, CLI output, Redis", leaks, "0")
        assert leaks == 0
        assert stack.failed_count() == 0
    finally:
        stack.close()
        server.stop()
