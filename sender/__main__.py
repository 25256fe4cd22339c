"""`python -m sender <command>`: the operator's commands. Today one: ``check`` (`sender.check`)."""

from __future__ import annotations

import sys

USAGE = "usage: python -m sender check [--profile-file F | --secret NAME] [--send-to ADDR]"


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "check":
        print(USAGE, file=sys.stderr)
        return 2
    from sender import check  # noqa: PLC0415 - the command's imports only when it runs

    return check.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
