"""How the person ran the loader, so that every message names what they can type again: the installed
command (setup/command.sh runs `python -m loader` with INFLUX_ARCHIVE_COMMAND=influx-archive and
INFLUX_ARCHIVE_ENV_FILE=/opt/influx-archive/.env), pip's console script `influx-archive` (settings in .env
here, as on the hand route), or the hand route from a checkout (`python -m loader`, settings in .env)."""

import os
import sys

HAND_ROUTE = "python -m loader"
SCRIPT = "influx-archive"  # pyproject.toml's console script (pip install .)


def command(words: str = "") -> str:
    """`influx-archive status` on an installed Pi or through pip's console script, `python -m loader status` on
    the hand route."""
    name = os.environ.get("INFLUX_ARCHIVE_COMMAND", "").strip()
    if not name:
        name = SCRIPT if os.path.basename(sys.argv[0] if sys.argv else "") == SCRIPT else HAND_ROUTE
    return f"{name} {words}".strip()


def settings_file() -> str:
    """The settings file to edit: the installed one, or .env (the hand route's default)."""
    return os.environ.get("INFLUX_ARCHIVE_ENV_FILE", "").strip() or ".env"


def installed() -> bool:
    return bool(os.environ.get("INFLUX_ARCHIVE_COMMAND", "").strip())
