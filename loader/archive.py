"""The archive's tables as the settings describe them, made in this one place: the 5-second table
(the sink), its rollups and its sessions. Every caller (job, check, status, adopt, bench) asks here,
so a setting reaches them all the same way. (The source is sources.open_source(config), likewise the
one place for it.)"""

from __future__ import annotations

from typing import Optional, Sequence

from .config import Config
from .pg import Database
from .rollups import Rollups
from .sessions import Sessions
from .sink import ArchiveTable


def table(db: Database, config: Config, tags: Optional[Sequence[str]] = None, announce: bool = True,
          checked: bool = True) -> ArchiveTable:
    """The 5-second table (TAGS, WINDOW, VALID_RANGES recorded on its columns); tags: the key tags, TAGS
    unless the caller's table has others (adopt's has none); announce=False for `check`, whose changes are
    rolled back; checked=False leaves its width unchecked and its ranges unrecorded (adopt labels a table the
    reference script made, whose width and readings are its own)."""
    return ArchiveTable(db, config.tags if tags is None else tags, announce=announce,
                        window=config.window if checked else None,
                        valid_ranges=config.valid_ranges if checked else None)


def rollups(db: Database, config: Config, tags: Optional[Sequence[str]] = None) -> Rollups:
    """The 1-minute, 1-hour and 1-day rollups (ROLLUP_BELOW, WINDOW); tags: the key tags, TAGS unless
    the caller's table has others (adopt's has none)."""
    return Rollups(db, config.tags if tags is None else tags, config.rollup_below, config.window)


def sessions(db: Database, config: Config, tags: Optional[Sequence[str]] = None) -> Sessions:
    """The sessions (SESSION_SPO2, SESSION_PULSE, SESSION_GAP, SESSION_MIN, WINDOW, ROLLUP_BELOW's
    threshold for the SpO2 field, SUBJECT)."""
    return Sessions(db, config.tags if tags is None else tags, config.session_spo2, config.session_pulse,
                    config.session_gap, config.session_min, config.window,
                    config.rollup_below.get(config.session_spo2), config.subject)
