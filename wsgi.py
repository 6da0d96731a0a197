"""Standalone WSGI entry: `gunicorn wsgi:app` (run `sslmanager worker` beside it for renewals)."""
from webapp import create_app

app = create_app()
