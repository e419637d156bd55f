"""The WSGI entry point gunicorn loads: `gunicorn -c webhooks/gunicorn_conf.py webhooks.wsgi:app`."""

from webhooks.app import create_app

app = create_app()
