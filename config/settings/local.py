"""The embedded demo: SQLite, DEBUG on, secrets from the .env that `make demo` generates."""

from .base import *  # noqa: F403
from .base import env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
# No default: `make demo` generates one into .env (scripts/write_env.py).
SECRET_KEY = env("DJANGO_SECRET_KEY")
