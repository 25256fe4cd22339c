"""One function per measurement, (a) to (g); each starts what it needs and stops it again."""

from __future__ import annotations

import smtplib
import ssl
import statistics
import time
from dataclasses import dataclass

from bench import postfix_log
from bench.functions import (
    SEED,
    SMTP_SENDER,
    FirstSendProcess,
    Function,
    ProcessUsage,
    describe,
    message,
    post,
    server,
    usage,
    worker_pid,
)
from bench.options import Options
from bench.runs import Run, over_http, timed, warm_up
from bench.seed_function import build_message, read_profile, secret_manager_client
from bench.stack import SECRET_NAME, BenchError, Stack
from tests.support.ff_process import FunctionsFrameworkProcess, HttpResult

BATCH_PATH = "/batch"
LISTENER = "ssl"  # the profile's listener: implicit TLS + AUTH


def _threads(options: Options) -> int:
    """gunicorn threads for every function process: enough for the concurrent clients."""
    return max(4, options.clients)


def _smtp_sender_env(options: Options) -> dict[str, str]:
    """Pool settings from the command line; MAX_BATCH large enough for the (e) batch."""
    return {**options.pool_env(), "MAX_BATCH": str(max(options.batch, 500))}


# -- (a) ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RawLoop:
    """(a): one session (connect, TLS, AUTH took *setup_ms*), then *run* of messages over it."""

    setup_ms: float
    run: Run


def raw_loop(stack: Stack, sends: int) -> RawLoop:
    """(a) A persistent smtplib session sending *sends* messages, the profile read through the
    same client as the functions; the loop builds each message as the seed function does."""
    client = secret_manager_client(stack.secret_manager.address)
    profile = read_profile(client, SECRET_NAME)
    context = ssl.create_default_context(cafile=str(stack.tier.ca_file))
    started = time.perf_counter()
    with smtplib.SMTP_SSL(profile["host"], profile["port"], context=context, timeout=20) as smtp:
        smtp.login(profile["username"], profile["password"])
        setup_ms = 1000 * (time.perf_counter() - started)

        def send(index: int) -> None:
            fields = message("raw", index)
            smtp.send_message(
                build_message(profile["from"], fields["to"], fields["subject"], fields["text"])
            )

        run = timed(send, sends)
    return RawLoop(setup_ms, run)


# -- (b) ------------------------------------------------------------------------------------------
def seed_sequential(stack: Stack, options: Options) -> Run:
    """(b) The seed's bare function, warm, one POST after another (a new session per message)."""
    with server(stack, SEED, _threads(options), {}) as seed:
        warm_up(seed, "seed")
        return over_http(seed, "seed", options.sends)


# -- (c), (d), (e): one warm smtp-sender instance --------------------------------------------------
@dataclass(frozen=True)
class Batch:
    """(e): the batch's timing, or None with the reason it could not be measured."""

    run: Run | None
    note: str


@dataclass(frozen=True)
class WarmInstance:
    """(c) sequential, (d) concurrent, (e) batch, and the SMTP sessions Postfix saw meanwhile."""

    sequential: Run
    concurrent: Run
    batch: Batch
    max_open_sessions: int
    sessions: int


def warm_instance(stack: Stack, options: Options) -> WarmInstance:
    """(c), (d) and (e) against one smtp-sender process, in that order; the session figures cover
    its whole life (warm-ups included), read from Postfix's log once it has stopped."""
    offset = stack.log_offset()
    with server(stack, SMTP_SENDER, _threads(options), _smtp_sender_env(options)) as function:
        warm_up(function, "warm")
        sequential = over_http(function, "sequential", options.sends)
        warm_up(function, "concurrent", options.clients)
        concurrent = over_http(function, "concurrent", options.sends, options.clients)
        batch = batch_send(function, options.batch)
    log = postfix_log.wait_until_closed(lambda: stack.log_since(offset), LISTENER)
    return WarmInstance(
        sequential,
        concurrent,
        batch,
        postfix_log.max_open_sessions(log, LISTENER),
        postfix_log.session_count(log, LISTENER),
    )


def batch_items(result: HttpResult, count: int) -> list[object] | None:
    """The per-message results of a batch answer (a list of *count*, bare or as a value of the
    JSON object, ``results`` preferred); None for anything else (e.g. a single-message answer)."""
    try:
        document = result.json()
    except ValueError:
        return None
    if isinstance(document, dict):
        lists = [v for v in document.values() if isinstance(v, list) and len(v) == count]
        document = document.get("results", lists[0] if lists else None)
    return document if isinstance(document, list) and len(document) == count else None


def batch_send(function: FunctionsFrameworkProcess, count: int) -> Batch:
    """(e) ``POST /batch {"messages": [...]}`` with *count* messages, timed as one request."""
    messages = [message("batch", i) for i in range(count)]
    started = time.perf_counter()
    result = post(function, BATCH_PATH, {"messages": messages})
    wall_s = time.perf_counter() - started
    items = batch_items(result, count) if result.status == 200 else None
    if items is None:
        return Batch(None, f"POST {BATCH_PATH} answered {result.status} {describe(result)}")
    failed = [i for i, item in enumerate(items) if not _item_sent(item)]
    if failed:
        raise BenchError(f"batch: {len(failed)} of {count} not sent, first: {items[failed[0]]}")
    return Batch(Run(count, wall_s, (wall_s,)), f"{count} sent")


def _item_sent(item: object) -> bool:
    return isinstance(item, dict) and item.get("status") == "sent"


# -- (f) ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ColdStarts:
    """(f): spawn -> first email accepted, seconds per spawn, for the seed and smtp-sender."""

    seed_s: list[float]
    smtp_sender_s: list[float]

    @property
    def seed_median_s(self) -> float:
        return statistics.median(self.seed_s)

    @property
    def smtp_sender_median_s(self) -> float:
        return statistics.median(self.smtp_sender_s)


def _spawn_to_first_send(stack: Stack, function: Function, options: Options) -> float:
    extra = _smtp_sender_env(options) if function is SMTP_SENDER else {}
    process = FirstSendProcess(stack, function, _threads(options), extra)
    started = time.perf_counter()
    try:
        process.start()
        return time.perf_counter() - started
    finally:
        process.stop()


def cold_starts(stack: Stack, options: Options) -> ColdStarts:
    """(f) *cold_runs* spawns of each function, alternating, so a busy moment of the machine
    falls on both."""
    seed, smtp_sender = [], []
    for _ in range(options.cold_runs):
        seed.append(_spawn_to_first_send(stack, SEED, options))
        smtp_sender.append(_spawn_to_first_send(stack, SMTP_SENDER, options))
    return ColdStarts(seed, smtp_sender)


# -- (g) ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Memory:
    """(g): the smtp-sender worker after the first and the second number of sends."""

    sends: tuple[int, int]
    first: ProcessUsage
    second: ProcessUsage


def memory_growth(stack: Stack, options: Options) -> Memory:
    """(g) A fresh smtp-sender process driven by the concurrent clients; its gunicorn worker's
    VmRSS (and threads, fds) read after ``rss_at[0]`` and after ``rss_at[1]`` sends in all."""
    first_at, second_at = options.rss_at
    env = _smtp_sender_env(options)
    with server(stack, SMTP_SENDER, _threads(options), env) as function:
        assert function.pid is not None  # started
        worker = worker_pid(function.pid)
        over_http(function, "memory", first_at, options.clients)
        first = usage(worker)
        over_http(function, "memory", second_at - first_at, options.clients)
        second = usage(worker)
    return Memory((first_at, second_at), first, second)
