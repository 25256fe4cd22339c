"""The benchmark's command line: sizes of each measurement and the pool settings it passes on."""

from __future__ import annotations

import argparse
from dataclasses import dataclass


@dataclass(frozen=True)
class Options:
    """How much to measure. The pool settings go to smtp-sender's process unchanged."""

    sends: int
    clients: int
    batch: int
    cold_runs: int
    rss_at: tuple[int, int]
    pool_size: int
    pool_idle_s: float
    session_max_messages: int
    keep_state: bool

    def pool_env(self) -> dict[str, str]:
        """The ``SMTP_POOL_*`` variables for the function process (ignored before the pool)."""
        return {
            "SMTP_POOL_SIZE": str(self.pool_size),
            "SMTP_POOL_IDLE_S": f"{self.pool_idle_s:g}",
            "SMTP_SESSION_MAX_MESSAGES": str(self.session_max_messages),
        }


# (full run, --quick); an option given explicitly wins over either.
_SIZES: dict[str, tuple[int, int]] = {
    "sends": (1000, 40),
    "batch": (1000, 200),
    "cold_runs": (11, 3),
}
_RSS_AT = {False: (200, 2000), True: (100, 500)}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/bench.py",
        description="smtp-sender against a raw smtplib loop and the seed's bare function, "
        "on the real-MTA tier's Postfix (loopback only; needs root and tests/mta/install.sh).",
    )
    parser.add_argument("--quick", action="store_true", help="a short run (about a minute)")
    parser.add_argument(
        "--sends", type=int, help="messages per measurement for (a)-(d) (1000; quick 40)"
    )
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients in (d), (g)")
    parser.add_argument("--batch", type=int, help="messages in the (e) batch (1000; quick 200)")
    parser.add_argument("--cold-runs", type=int, help="spawns per function in (f) (11; quick 3)")
    parser.add_argument(
        "--rss-at",
        type=int,
        nargs=2,
        metavar=("FIRST", "SECOND"),
        help="sends after which (g) reads RSS (200 2000; quick 100 500)",
    )
    parser.add_argument("--pool-size", type=int, default=4, help="SMTP_POOL_SIZE (4)")
    parser.add_argument("--pool-idle-s", type=float, default=30.0, help="SMTP_POOL_IDLE_S (30)")
    parser.add_argument(
        "--session-max-messages", type=int, default=100, help="SMTP_SESSION_MAX_MESSAGES (100)"
    )
    parser.add_argument(
        "--keep-state",
        action="store_true",
        help="keep the state directory (Postfix and function logs) and print where it is",
    )
    return parser


def parse(argv: list[str] | None = None) -> Options:
    """Options from *argv* (``sys.argv[1:]`` when None); sizes below 1 are refused."""
    parser = _parser()
    args = parser.parse_args(argv)
    quick = 1 if args.quick else 0
    sizes = {
        name: getattr(args, name) if getattr(args, name) is not None else defaults[quick]
        for name, defaults in _SIZES.items()
    }
    rss_at = tuple(args.rss_at) if args.rss_at else _RSS_AT[args.quick]
    for name, value in [*sizes.items(), ("clients", args.clients), ("rss_at", min(rss_at))]:
        if value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if rss_at[0] >= rss_at[1]:
        parser.error("--rss-at FIRST must be smaller than SECOND")
    if args.pool_size < 0:
        parser.error("--pool-size must be 0 (no pool) or more")
    return Options(
        sends=sizes["sends"],
        clients=args.clients,
        batch=sizes["batch"],
        cold_runs=sizes["cold_runs"],
        rss_at=(rss_at[0], rss_at[1]),
        pool_size=args.pool_size,
        pool_idle_s=args.pool_idle_s,
        session_max_messages=args.session_max_messages,
        keep_state=args.keep_state,
    )
