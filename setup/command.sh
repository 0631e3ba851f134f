#!/bin/sh
# @NAME@: the loader as its service user (@USER@) with the installed settings (@APP_DIR@/.env), from any
# directory: `@NAME@ status`, `@NAME@ backfill --start ... --end ...`, `@NAME@ --help`.
# Written by install.sh from setup/command.sh (edit that, re-run install.sh).
cd @APP_DIR@ || exit 2
# messages and --help name this command and its settings file (loader/invocation.py)
set -- INFLUX_ARCHIVE_COMMAND=@NAME@ INFLUX_ARCHIVE_ENV_FILE=@APP_DIR@/.env @PYTHON@ -m loader --env-file @APP_DIR@/.env "$@"
if [ "$(id -un)" = "@USER@" ]; then
  exec env "$@"
elif [ "$(id -u)" -eq 0 ]; then
  exec /usr/sbin/runuser -u @USER@ -- env "$@"
elif command -v sudo >/dev/null 2>&1; then
  # the settings hold secrets and are the service user's alone (mode 0600): sudo asks for your password
  exec sudo -u @USER@ -- env "$@"
else
  echo "@NAME@: run it as @USER@ or as root (its settings are theirs alone, and sudo is not installed)" >&2
  exit 2
fi
