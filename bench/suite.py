"""The whole benchmark in order: (a) to (g) against one stack, then the import-time summary.

Postfix's queue is drained between measurements, so delivering one's mail does not take CPU from
the next; progress goes to stderr (the report is printed on stdout at the end)."""

from __future__ import annotations

import sys

from bench import importtime, measurements
from bench.options import Options
from bench.report import Results
from bench.stack import Stack


def _progress(text: str) -> None:
    print(f"... {text}", file=sys.stderr, flush=True)


def run(stack: Stack, options: Options) -> Results:
    """Measure everything; raises `BenchError` when a measurement cannot be taken."""
    _progress(f"(a) raw smtplib loop, {options.sends} messages")
    raw = measurements.raw_loop(stack, options.sends)
    stack.settle()
    _progress(f"(b) seed function, {options.sends} messages")
    seed = measurements.seed_sequential(stack, options)
    stack.settle()
    _progress(
        f"(c)-(e) smtp-sender warm: {options.sends} sequential, {options.sends} from "
        f"{options.clients} clients, a batch of {options.batch}"
    )
    warm = measurements.warm_instance(stack, options)
    stack.settle()
    _progress(f"(f) cold spawn -> first email, {options.cold_runs} of each")
    cold = measurements.cold_starts(stack, options)
    stack.settle()
    _progress(f"(g) memory after {options.rss_at[0]} and {options.rss_at[1]} sends")
    memory = measurements.memory_growth(stack, options)
    _progress('python -X importtime -c "import main"')
    imports = importtime.measure()
    return Results(options, raw, seed, warm, cold, memory, imports)
