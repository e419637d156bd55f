"""The production gunicorn config's access log never shows a query string (it can carry a webhook secret)."""

from __future__ import annotations

import runpy
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

from gunicorn.config import Config
from gunicorn.glogging import Logger

CONF = Path(__file__).resolve().parents[2] / "webhooks" / "gunicorn_conf.py"


def access_line(tmp_path: Path, environ: dict[str, str]) -> str:
    settings = runpy.run_path(str(CONF))
    config = Config()
    config.set("accesslog", str(tmp_path / "access.log"))
    config.set("access_log_format", settings.get("access_log_format", config.access_log_format))  # unset: gunicorn's
    logger = Logger(config)
    response = SimpleNamespace(status="202 ACCEPTED", sent=57, headers=[("Content-Type", "application/json")])
    request = SimpleNamespace(headers=[("User-Agent", "Redmine/5.0"), ("X-Webhook-Token", "from-header")])
    logger.access(
        response,
        request,
        {"REMOTE_ADDR": "10.0.0.7", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_USER_AGENT": "Redmine/5.0", **environ},
        timedelta(milliseconds=3),
    )
    for handler in logger.access_log.handlers:
        handler.close()
    return (tmp_path / "access.log").read_text()


def test_the_plugin_token_in_the_url_is_not_logged(tmp_path: Path) -> None:
    line = access_line(
        tmp_path,
        {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/webhooks/redmine",
            "QUERY_STRING": "token=s3cret-plugin-token",
            "RAW_URI": "/webhooks/redmine?token=s3cret-plugin-token",
        },
    )
    assert "s3cret-plugin-token" not in line and "from-header" not in line
    assert '"POST /webhooks/redmine HTTP/1.1" 202 57' in line and "10.0.0.7" in line and '"Redmine/5.0"' in line
