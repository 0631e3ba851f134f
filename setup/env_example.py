"""Regenerate .env.example from loader/config.py's SETTINGS:  python3 setup/env_example.py > .env.example"""

import os
import sys
import textwrap

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from loader.config import SETTINGS  # noqa: E402

NEEDED_FOR_FLUX = {"INFLUX_TOKEN": "Required for flux (and for Cloud with influxql)", "INFLUX_ORG": "Required for flux"}


def env_example() -> str:
    """The text of .env.example."""
    out = ["# influx-archive settings. Copy to .env (chmod 600) and fill in the Required ones.",
           "# Variables already in the environment override this file. Durations: 5s, 15m, 1h, 30d, 2w.",
           "# The reference script's keys CONNECTION, TOKEN, ORG and PG_CONNECT are accepted as aliases.",
           "# Generated from loader/config.py by setup/env_example.py.", ""]
    for s in SETTINGS:
        need = "Required" if s.required else NEEDED_FOR_FLUX.get(s.key, "Optional")
        default = f" Default: {s.default!r}." if s.default else (" Default: empty." if s.default == "" else "")
        alias = f" Alias: {', '.join(s.aliases)}." if s.aliases else ""
        secret = " Secret." if s.secret else ""
        out += ["# " + line for line in textwrap.wrap(f"{need}. {s.help}{default}{alias}{secret}", 96)]
        active = s.required or s.key in NEEDED_FOR_FLUX
        if s.example and not active:
            out.append(f"# e.g. {s.key}={s.example}")
        out.append(f"{s.key}={s.example}" if active else f"# {s.key}={s.default or ''}")
        out.append("")
    return "\n".join(out)


def main() -> None:
    print(env_example(), end="")


if __name__ == "__main__":
    main()
