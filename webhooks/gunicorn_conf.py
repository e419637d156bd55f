"""Production gunicorn settings for the webhook service (also used by the benchmark, for both apps).

Threads per process keep a slow Redis round trip from blocking other deliveries; the process count
follows the cores. Everything can be overridden by environment (PORT, WEB_CONCURRENCY, WEB_THREADS).
"""

import multiprocessing
import os

bind = os.environ.get("BIND") or f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", max(2, multiprocessing.cpu_count())))
threads = int(os.environ.get("WEB_THREADS", "4"))
worker_class = "gthread"
timeout = 30
graceful_timeout = 20
keepalive = 5
accesslog = os.environ.get("WEB_ACCESS_LOG") or None  # e.g. "-" for stdout
# gunicorn's default format with the path instead of the raw request line: the redmine_webhook plugin can
# only send its shared secret in the URL (`?token=...`), and no secret may reach a log.
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "%(f)s" "%(a)s"'
errorlog = "-"
loglevel = os.environ.get("WEB_LOG_LEVEL", "info")
# gunicorn >= 25 opens a control socket at one fixed per-user path; several servers on one host
# (web + benchmark baseline, tests) would take it from each other. Opt in with WEB_CONTROL_SOCKET.
control_socket = os.environ.get("WEB_CONTROL_SOCKET") or None
control_socket_disable = not control_socket
if control_socket is None:
    del control_socket


def post_worker_init(worker):  # type: ignore[no-untyped-def]
    """Gunicorn's own 4xx answers (bad request line, headers too large, ...) in our JSON error shape."""
    from webhooks.gunicorn_errors import install

    install()
