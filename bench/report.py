"""The printed result: each figure, then each ratio against issue 11's targets (met / not met),
then the import-time summary for the cold-start work."""

from __future__ import annotations

import os
from dataclasses import dataclass

from bench.importtime import ImportProfile
from bench.measurements import ColdStarts, Memory, RawLoop, WarmInstance
from bench.options import Options
from bench.runs import Run


@dataclass(frozen=True)
class Results:
    """Everything one run measured."""

    options: Options
    raw: RawLoop
    seed: Run
    warm: WarmInstance
    cold: ColdStarts
    memory: Memory
    imports: ImportProfile


@dataclass(frozen=True)
class Target:
    """One ratio (or count) and its bound; *value* None = could not be measured in this run."""

    name: str
    value: float | None
    limit: float
    at_least: bool
    unit: str = "x"

    @property
    def verdict(self) -> str:
        if self.value is None:
            return "not measured"
        met = self.value >= self.limit if self.at_least else self.value <= self.limit
        return "met" if met else "not met"

    def _show(self, number: float) -> str:
        return f"{number:.2f}{self.unit}" if self.unit else f"{number:g}"

    def row(self) -> str:
        shown = "-" if self.value is None else self._show(self.value)
        goal = f"{'>=' if self.at_least else '<='} {self.limit:g}{self.unit}"
        return f"  {self.name:<52} {shown:>8}   target {goal:<8} {self.verdict}"


def targets(results: Results) -> list[Target]:
    """Issue 11's targets, computed from this run's figures only."""
    raw_ms = results.raw.run.per_message_ms
    warm = results.warm
    batch = warm.batch.run
    memory = results.memory
    pool = results.options.pool_size
    return [
        Target(
            "(b)/(c) warm sequential speed-up over the seed",
            results.seed.per_message_ms / warm.sequential.per_message_ms,
            8,
            at_least=True,
        ),
        Target(
            "(c)/(a) warm sequential vs raw loop, per message",
            warm.sequential.per_message_ms / raw_ms,
            1.6,
            at_least=False,
        ),
        Target(
            f"(d)/(c) {results.options.clients} clients vs sequential, throughput",
            warm.concurrent.throughput / warm.sequential.throughput,
            3,
            at_least=True,
        ),
        Target(
            f"(d) most SMTP sessions open at once (pool size {pool})",
            warm.max_open_sessions if pool > 0 else None,
            pool,
            at_least=False,
            unit="",
        ),
        Target(
            f"(e)/(a) batch of {results.options.batch} vs raw loop, per message",
            None if batch is None else batch.per_message_ms / raw_ms,
            1.3,
            at_least=False,
        ),
        Target(
            "(f) cold spawn -> first email, smtp-sender / seed",
            results.cold.smtp_sender_median_s / results.cold.seed_median_s,
            1.1,
            at_least=False,
        ),
        Target(
            f"(g) RSS after {memory.sends[1]} / after {memory.sends[0]} sends",
            memory.second.rss_kib / memory.first.rss_kib,
            1.05,
            at_least=False,
        ),
    ]


def _latency(run: Run) -> str:
    return f"p50 {run.p50_ms:.1f} ms, p95 {run.p95_ms:.1f} ms per request"


def figures(results: Results) -> list[str]:
    """One line (or two) per measurement, (a) to (g)."""
    raw, seed, warm, options = results.raw, results.seed, results.warm, results.options
    lines = [
        f"(a) raw smtplib loop, one session     {raw.run.per_message_ms:7.2f} ms/msg   "
        f"({raw.run.count} msgs; connect + TLS + AUTH once: {raw.setup_ms:.1f} ms)",
        f"(b) seed function, session per msg    {seed.per_message_ms:7.2f} ms/msg   "
        f"({seed.count} msgs; {_latency(seed)})",
        f"(c) smtp-sender warm, sequential      {warm.sequential.per_message_ms:7.2f} ms/msg   "
        f"({warm.sequential.count} msgs; {_latency(warm.sequential)})",
        f"(d) smtp-sender, {options.clients} concurrent clients  "
        f"{warm.concurrent.per_message_ms:7.2f} ms/msg   "
        f"({warm.concurrent.count} msgs; {warm.concurrent.throughput:.1f} msg/s against "
        f"{warm.sequential.throughput:.1f} sequential; {_latency(warm.concurrent)})",
        f"    SMTP sessions in Postfix's log during (c)-(e) and their warm-ups: "
        f"{warm.sessions} opened, at most {warm.max_open_sessions} open at once "
        f"(SMTP_POOL_SIZE={options.pool_size})",
    ]
    if warm.batch.run is None:
        lines.append(f"(e) batch: not measured ({warm.batch.note})")
    else:
        lines.append(
            f"(e) batch of {warm.batch.run.count:<5} via POST /batch   "
            f"{warm.batch.run.per_message_ms:7.2f} ms/msg   "
            f"({warm.batch.note} in {warm.batch.run.wall_s:.2f} s)"
        )
    lines += _cold_lines(results.cold) + _memory_lines(results.memory)
    return lines


def _cold_lines(cold: ColdStarts) -> list[str]:
    def each(times: list[float]) -> str:
        return " ".join(f"{t:.2f}" for t in times)

    return [
        f"(f) cold spawn -> first email accepted, median of {len(cold.seed_s)}: "
        f"seed {cold.seed_median_s:.3f} s, smtp-sender {cold.smtp_sender_median_s:.3f} s "
        f"(fastest: {min(cold.seed_s):.3f} s, {min(cold.smtp_sender_s):.3f} s)",
        f"    each (s): seed {each(cold.seed_s)}; smtp-sender {each(cold.smtp_sender_s)}",
    ]


def _memory_lines(memory: Memory) -> list[str]:
    return [
        f"(g) smtp-sender worker after {count:>5} sends: VmRSS {usage.rss_kib / 1024:6.1f} MiB, "
        f"{usage.threads} threads, {usage.fds} open fds"
        for count, usage in zip(memory.sends, (memory.first, memory.second), strict=True)
    ]


def import_lines(profile: ImportProfile) -> list[str]:
    """Total import time of ``main`` and where it goes."""
    lines = [
        f'python -X importtime -c "import main" (median of 3): {profile.total_ms:.0f} ms in all',
        "  top 10 modules by own import time (ms):",
    ]
    lines += [f"    {ms:7.1f}  {name}" for name, ms in profile.modules]
    packages = ", ".join(f"{name} {ms:.0f}" for name, ms in profile.packages)
    lines.append(f"  by top-level package (ms): {packages}")
    return lines


def header(smtp_port: int, options: Options) -> list[str]:
    """What was measured against, and with which settings."""
    pool = " ".join(f"{name}={value}" for name, value in options.pool_env().items())
    return [
        f"smtp-sender benchmark: Postfix on 127.0.0.1:{smtp_port} (implicit TLS + AUTH), "
        "profile read through google-cloud-secret-manager from the gRPC stand-in",
        f"{options.sends} messages per measurement, {options.clients} concurrent clients in (d) "
        f"and (g); smtp-sender runs with {pool}",
        f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[1]:.1f} over the last "
        "5 minutes (other work on the machine slows every figure; the ratios less so)",
    ]


def render(results: Results, header: list[str]) -> str:
    """The whole report as text."""
    lines = [*header, "", *figures(results), "", "targets (issue 11; ratios from this run):"]
    lines += [target.row() for target in targets(results)]
    lines += ["", *import_lines(results.imports)]
    return "\n".join(lines)
