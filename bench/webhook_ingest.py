"""Webhook ingest throughput: our endpoint vs a bare Flask app (HMAC + one enqueue), side by side.

    python -m bench.webhook_ingest [--requests 2000] [--concurrency 16] [--max-seconds 60]

Both apps run under the same gunicorn settings (webhooks/gunicorn_conf.py), against a private
redis-server on a free port (or --redis-url, whose database is flushed), with no workers, so only
ingest is measured. Every request is a validly signed event for a distinct ticket (each one costs a
real enqueue; no coalescing shortcut). The rounds alternate ours/bare to even out drift, and the
best round of each is compared. The load generator is a bounded loopback thread pool with one
keep-alive session per thread; on a small machine it shares the cores with the servers, which
limits both apps alike.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import redis
import requests
import yaml

from bench.table import Row, ratio
from tests.pipeline_support.processes import Process, RedisServer, free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-secret"


@dataclass
class Round:
    app: str
    requests: int
    seconds: float
    latencies_ms: list[float]
    errors: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def signed_bodies(count: int, offset: int) -> list[tuple[bytes, dict[str, str]]]:
    out = []
    for n in range(count):
        body = json.dumps({"ticket_id": f"T{offset + n:07d}", "action": "updated"}).encode()
        digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        out.append((body, {"Content-Type": "application/json", "X-Signature-256": f"sha256={digest}"}))
    return out


def load(
    url: str, bodies: list[tuple[bytes, dict[str, str]]], concurrency: int, deadline: float
) -> tuple[float, list[float], int]:
    local = threading.local()
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()

    def one(item: tuple[bytes, dict[str, str]]) -> None:
        nonlocal errors
        if time.monotonic() > deadline:
            return
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        started = time.perf_counter()
        try:
            ok = session.post(url, data=item[0], headers=item[1], timeout=10).status_code == 202
        except requests.RequestException:
            ok = False
        elapsed = (time.perf_counter() - started) * 1000
        with lock:
            latencies.append(elapsed)
            errors += not ok

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, bodies))
    return time.perf_counter() - started, latencies, errors


def start_app(
    name: str, app: str, env: dict[str, str], log_dir: Path, workers: int, threads: int
) -> tuple[Process, str]:
    port = free_port()
    proc = Process(
        name,
        [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "webhooks" / "gunicorn_conf.py"), app],
        log_dir,
        env={
            **env,
            "BIND": f"127.0.0.1:{port}",
            "WEB_CONCURRENCY": str(workers),
            "WEB_THREADS": str(threads),
            "WEB_LOG_LEVEL": "warning",
        },
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if not proc.alive():
            raise RuntimeError(f"{name} exited:\n{proc.log()}")
        try:
            requests.get(url + "/", timeout=1)
            return True
        except requests.RequestException:
            return False

    wait_for(up, 30, what=name)
    return proc, url + "/webhooks/memory"


GOAL = ">= 0.95"
FIGURE = "webhook ingest req/s, ours / bare Flask HMAC + enqueue app (same gunicorn)"


def measure(
    *,
    requests_per_round: int = 2000,
    rounds: int = 2,
    concurrency: int = 16,
    max_seconds: float = 60.0,
    web_workers: int = 2,
    web_threads: int = 4,
    redis_url: str | None = None,
) -> list[Round]:
    """Start both apps, warm them up, then alternate rounds of ours and bare; every round measured."""
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    server = None if redis_url else RedisServer(work)
    redis_url = redis_url or server.url  # type: ignore[union-attr]
    conn = redis.Redis.from_url(redis_url)
    conn.flushdb()
    config = work / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data_manager": {
                    "data_path": str(work / "data"),
                    "sources": {
                        "tickets": {
                            "memory": {
                                "enabled": True,
                                "webhook_secret": SECRET,
                                "store_path": str(work / "upstream.json"),
                            }
                        }
                    },
                },
                "redis": {"url": redis_url},
            }
        )
    )
    procs: list[Process] = []
    deadline = time.monotonic() + max_seconds
    measured: list[Round] = []
    try:
        ours, ours_url = start_app(
            "ours", "webhooks.wsgi:app", {"TICKETS_CONFIG": str(config)}, work, web_workers, web_threads
        )
        procs.append(ours)
        bare, bare_url = start_app(
            "bare",
            "bench.bare_app:app",
            {"BENCH_REDIS_URL": redis_url, "BENCH_SECRET": SECRET},
            work,
            web_workers,
            web_threads,
        )
        procs.append(bare)
        offset = 0
        for url in (ours_url, bare_url):  # warm-up: connections, imports, script cache
            load(url, signed_bodies(200, offset), concurrency, deadline)
            offset += 200
        for n in range(rounds):
            order = (("ours", ours_url), ("bare", bare_url))
            for name, url in order if n % 2 == 0 else order[::-1]:
                conn.flushdb()
                bodies = signed_bodies(requests_per_round, offset)
                offset += requests_per_round
                seconds, latencies, errors = load(url, bodies, concurrency, deadline)
                measured.append(Round(name, len(latencies), seconds, latencies, errors))
                if time.monotonic() > deadline:
                    break
            if time.monotonic() > deadline:
                break
    finally:
        for proc in procs:
            proc.stop()
        if server:
            server.stop()
    return measured


def best_rates(measured: list[Round]) -> dict[str, float]:
    return {name: max((r.rate for r in measured if r.app == name), default=0.0) for name in ("ours", "bare")}


def rows(quick: bool = False) -> list[Row]:
    """For `python -m bench`: 3 rounds of 2,000 requests each (quick: 2 of 500)."""
    measured = measure(requests_per_round=500 if quick else 2000, rounds=2 if quick else 3, max_seconds=300)
    best = best_rates(measured)
    errors = sum(r.errors for r in measured)
    pairs = [
        ratio(o.rate, b.rate)
        for o, b in zip(
            (r for r in measured if r.app == "ours"), (r for r in measured if r.app == "bare"), strict=False
        )
    ]
    return [
        Row(
            FIGURE,
            f"{best['ours']:.0f} req/s",
            f"{best['bare']:.0f} req/s",
            ratio(best["ours"], best["bare"]),
            GOAL,
            f"best round each; rounds {', '.join(f'{p:.2f}' for p in pairs)}"
            + (f"; {errors} errors" if errors else ""),
        )
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="requests per round and app (bounded)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-seconds", type=float, default=60.0, help="overall time bound")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--web-threads", type=int, default=4)
    parser.add_argument("--redis-url", help="use this Redis database (it is FLUSHED) instead of a private redis-server")
    args = parser.parse_args(argv)

    rounds = measure(
        requests_per_round=args.requests,
        rounds=args.rounds,
        concurrency=args.concurrency,
        max_seconds=args.max_seconds,
        web_workers=args.web_workers,
        web_threads=args.web_threads,
        redis_url=args.redis_url,
    )
    print(
        f"webhook ingest, {args.web_workers} gunicorn workers x {args.web_threads} threads, "
        f"{args.concurrency} concurrent clients, distinct tickets"
    )
    print(f"{'app':<6} {'requests':>8} {'seconds':>8} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}")
    for r in rounds:
        print(
            f"{r.app:<6} {r.requests:>8} {r.seconds:>8.2f} {r.rate:>8.0f} {r.pct(0.5):>7.1f} {r.pct(0.99):>7.1f} {r.errors:>6}"
        )
    best = best_rates(rounds)
    if best["bare"]:
        print(
            f"ratio ours/bare (best round each): {best['ours'] / best['bare']:.2f} "
            f"({best['ours']:.0f} vs {best['bare']:.0f} req/s; median p50 ours "
            f"{statistics.median(r.pct(0.5) for r in rounds if r.app == 'ours'):.1f} ms)"
        )
    failed = sum(r.errors for r in rounds)
    if failed:
        print(f"WARNING: {failed} request(s) did not answer 202", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
