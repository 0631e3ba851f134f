"""The clock the loader trusts: injectable in tests, checked for NTP sync where the system says.

A Raspberry Pi has no real-time clock: until NTP answers it boots with the time it last saved
(fake-hwclock), which can be hours or days behind. Windows computed from such a clock would be
wrong, so the loader asks before it moves anything.
"""

import shutil
import subprocess
import time
from typing import Optional, Protocol

from .errors import ClockError


class Clock(Protocol):
    """What the loader asks of a clock: the time, and whether NTP vouches for it (tests pass their own)."""

    def now(self) -> float: ...
    def synchronized(self) -> Optional[bool]: ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def synchronized(self) -> Optional[bool]:
        """True/False as systemd-timesyncd (or chrony via timedated) reports; None when it cannot tell."""
        timedatectl = shutil.which("timedatectl")
        if not timedatectl:
            return None
        try:
            out = subprocess.run([timedatectl, "show", "--property=NTPSynchronized", "--value"],
                                 capture_output=True, text=True, timeout=5, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        answer = out.stdout.strip().lower()
        if out.returncode != 0 or answer not in ("yes", "no"):
            return None  # no systemd (container, chroot): cannot tell
        return answer == "yes"


def check_synchronized(clock: Clock, policy: str, doing: str) -> None:
    """Raise ClockError unless the clock may be trusted under REQUIRE_CLOCK_SYNC (auto, yes, no)."""
    synced = clock.synchronized() if policy != "no" else True
    if synced is False or (policy == "yes" and synced is None):
        raise ClockError(f"the system clock is not NTP-synchronised; not {doing} until it is",
                         hint="wait for `timedatectl` to say 'System clock synchronized: yes' "
                              "(or set REQUIRE_CLOCK_SYNC=no)")
