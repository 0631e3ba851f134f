"""How the person ran the loader, so that every message names what they can type again: the installed
command (setup/command.sh runs `python -m loader` with INFLUX_ARCHIVE_COMMAND=influx-archive and
INFLUX_ARCHIVE_ENV_FILE=/opt/influx-archive/.env), or the hand route from a checkout (`python -m loader`,
settings in .env)."""

import os

HAND_ROUTE = "python -m loader"


def command(words=""):
    """`influx-archive status` on an installed Pi, `python -m loader status` on the hand route."""
    name = os.environ.get("INFLUX_ARCHIVE_COMMAND", "").strip() or HAND_ROUTE
    return f"{name} {words}".strip()


def settings_file():
    """The settings file to edit: the installed one, or .env (the hand route's default)."""
    return os.environ.get("INFLUX_ARCHIVE_ENV_FILE", "").strip() or ".env"


def installed():
    return bool(os.environ.get("INFLUX_ARCHIVE_COMMAND", "").strip())
