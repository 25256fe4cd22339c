"""The ledger's contract, against the in-memory store and the real Firestore emulator."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from sender.ledger import (
    FAILED,
    PARTIAL,
    REJECTED,
    SENDING,
    SENT,
    Attempt,
    Busy,
    Claim,
    Claimed,
    ClaimResult,
    Duplicate,
    Failure,
    Ledger,
    Status,
)
from sender.ledger_memory import MemoryLedger
from sender.outcome import Refusal
from tests.support.fakes import FakeClock
from tests.support.ledgers import LEASE_S, TTL_S, LedgerFactory
from tests.support.load import all_at_once
from tests.support.loopback import free_port

MID = "<k1@smtp-sender.test>"
USER_UNKNOWN = Refusal(550, "5.1.1 no such user")


def claimed(result: ClaimResult) -> Claim:
    assert isinstance(result, Claimed), result
    return result.claim


def test_first_claim_sends_to_everyone_and_a_concurrent_one_is_busy(
    make_ledger: LedgerFactory,
) -> None:
    first, second = make_ledger(), make_ledger()
    claim = claimed(first.claim("event-1"))
    assert claim.owed is None
    assert not claim.taken_over

    other = second.claim("event-1")
    assert isinstance(other, Busy)
    assert 0 < other.retry_after_s <= LEASE_S
    assert isinstance(second.claim("event-2"), Claimed)  # keys are independent


def test_completed_key_is_a_duplicate_with_the_stored_outcome(make_ledger: LedgerFactory) -> None:
    ledger = make_ledger()
    claim = claimed(ledger.claim("event-1"))
    ledger.complete(
        claim, message_id=MID, accepted=["a@example.com"], refused={"c@example.com": USER_UNKNOWN}
    )

    again = make_ledger().claim("event-1")
    assert isinstance(again, Duplicate)
    assert again.entry.message_id == MID
    assert again.entry.accepted == ("a@example.com",)
    assert dict(again.entry.refused) == {"c@example.com": USER_UNKNOWN}
    looked_up = make_ledger().lookup("event-1")
    assert looked_up is not None
    assert looked_up.done
    assert make_ledger().lookup("never-seen") is None


def test_expired_lease_is_taken_over_and_the_old_holder_cannot_release_it(
    make_ledger: LedgerFactory, clock: FakeClock
) -> None:
    crashed = claimed(make_ledger().claim("event-1"))
    clock.advance(LEASE_S + 1)

    taker = claimed(make_ledger().claim("event-1"))
    assert taker.taken_over
    assert taker.owed is None  # the crashed holder recorded nothing: everyone is still owed

    make_ledger().release(crashed)  # a late release from the old holder must not free the key
    assert isinstance(make_ledger().claim("event-1"), Busy)


def test_partial_progress_leaves_only_the_owed_recipients_for_the_next_attempt(
    make_ledger: LedgerFactory,
) -> None:
    first = claimed(make_ledger().claim("event-1"))
    make_ledger().record_progress(
        first,
        Attempt(
            message_id=MID,
            accepted=["a@example.com"],
            refused={"c@example.com": USER_UNKNOWN},
            owed=["b@example.com"],
        ),
    )

    # The lease was dropped with the progress, so a redelivery may claim at once.
    retry = claimed(make_ledger().claim("event-1"))
    assert retry.owed == ("b@example.com",)
    assert retry.accepted == ("a@example.com",)
    assert dict(retry.refused) == {"c@example.com": USER_UNKNOWN}
    assert retry.attempt == 2

    final = make_ledger().complete(retry, message_id=MID, accepted=["b@example.com"], refused={})
    assert final.done
    assert final.accepted == ("a@example.com", "b@example.com")
    assert dict(final.refused) == {"c@example.com": USER_UNKNOWN}
    assert isinstance(make_ledger().claim("event-1"), Duplicate)


def test_an_accepted_recipient_is_never_owed_again(make_ledger: LedgerFactory) -> None:
    first = claimed(make_ledger().claim("event-1"))
    make_ledger().record_progress(
        first,
        Attempt(message_id=MID, accepted=["a@example.com"], refused={}, owed=["b@example.com"]),
    )
    retry = claimed(make_ledger().claim("event-1"))
    # A confused caller reporting `a` as owed again (it was accepted before) changes nothing.
    entry = make_ledger().record_progress(
        retry,
        Attempt(message_id=MID, accepted=[], refused={}, owed=["a@example.com", "b@example.com"]),
    )
    assert entry.owed == ("b@example.com",)


def test_release_after_a_failure_that_sent_nothing_frees_the_key(
    make_ledger: LedgerFactory,
) -> None:
    claim = claimed(make_ledger().claim("event-1"))
    make_ledger().release(claim)
    retry = claimed(make_ledger().claim("event-1"))
    assert retry.owed is None
    assert not retry.taken_over


def test_release_after_progress_keeps_what_was_sent(make_ledger: LedgerFactory) -> None:
    first = claimed(make_ledger().claim("event-1"))
    make_ledger().record_progress(
        first,
        Attempt(message_id=MID, accepted=["a@example.com"], refused={}, owed=["b@example.com"]),
    )
    second = claimed(make_ledger().claim("event-1"))
    make_ledger().release(second)  # e.g. the server was down on the retry
    third = claimed(make_ledger().claim("event-1"))
    assert third.owed == ("b@example.com",)
    assert third.accepted == ("a@example.com",)


def test_records_expire_after_the_ttl(make_ledger: LedgerFactory, clock: FakeClock) -> None:
    claim = claimed(make_ledger().claim("event-1"))
    make_ledger().complete(claim, message_id=MID, accepted=["a@example.com"], refused={})
    clock.advance(TTL_S - 1)
    assert isinstance(make_ledger().claim("event-1"), Duplicate)

    clock.advance(2)
    assert make_ledger().lookup("event-1") is None
    fresh = claimed(make_ledger().claim("event-1"))
    assert fresh.owed is None
    assert fresh.attempt == 1


def test_racing_claims_have_exactly_one_winner(make_ledger: LedgerFactory) -> None:
    racers = 6
    ledgers = [make_ledger() for _ in range(racers)]  # one client each, like separate instances
    results = all_at_once(lambda ledger: ledger.claim("contended"), ledgers)
    assert sum(isinstance(r, Claimed) for r in results) == 1
    assert sum(isinstance(r, Busy) for r in results) == racers - 1


def test_keys_are_any_text(make_ledger: LedgerFactory) -> None:
    key = "http:" + "한글/../키 " * 60  # slashes, spaces, Unicode, far longer than a document id
    claim = claimed(make_ledger().claim(key))
    make_ledger().complete(claim, message_id=MID, accepted=["a@example.com"], refused={})
    assert isinstance(make_ledger().claim(key), Duplicate)
    assert isinstance(make_ledger().claim(key[:-1]), Claimed)


def test_concurrent_outcomes_for_one_key_are_all_kept(make_ledger: LedgerFactory) -> None:
    # E.g. a slow holder and the instance that took its claim over, reporting at the same moment.
    claim = claimed(make_ledger().claim("event-1"))
    writers = 4
    ledgers = [make_ledger() for _ in range(writers)]

    def report(index: int) -> None:
        ledgers[index].record_progress(
            claim,
            Attempt(
                message_id=MID, accepted=[f"r{index}@x.test"], refused={}, owed=["late@x.test"]
            ),
        )

    all_at_once(report, list(range(writers)))
    entry = make_ledger().lookup("event-1")
    assert entry is not None
    assert sorted(entry.accepted) == [f"r{i}@x.test" for i in range(writers)]
    assert entry.owed == ("late@x.test",)


def test_memory_ledger_is_bounded_least_recently_used_first(clock: FakeClock) -> None:
    ledger = MemoryLedger(max_entries=2, lease_s=LEASE_S, ttl_s=TTL_S, clock=clock)

    def send(key: str) -> None:
        ledger.complete(
            claimed(ledger.claim(key)), message_id=MID, accepted=["a@x.test"], refused={}
        )

    send("old")
    send("kept")
    assert isinstance(ledger.claim("kept"), Duplicate)  # a hit: `old` is now the least recent
    send("new")
    assert len(ledger) == 2
    assert isinstance(ledger.claim("kept"), Duplicate)
    assert isinstance(ledger.claim("new"), Duplicate)
    assert isinstance(ledger.claim("old"), Claimed)  # evicted, so no longer deduplicated


@pytest.mark.emulator
@pytest.mark.usefixtures("firestore_env")
def test_firestore_record_carries_expire_at_for_the_ttl_policy(clock: FakeClock) -> None:
    from google.cloud import firestore

    from sender.ledger_firestore import FirestoreLedger, document_id

    ledger = FirestoreLedger(collection="ttl-check", lease_s=LEASE_S, ttl_s=TTL_S, clock=clock)
    ledger.complete(
        claimed(ledger.claim("event-ttl")), message_id=MID, accepted=["a@x.test"], refused={}
    )
    raw = firestore.Client().collection("ttl-check").document(document_id("event-ttl")).get()
    stored = raw.to_dict()
    assert stored is not None
    assert stored["expire_at"].timestamp() == pytest.approx(clock.now + TTL_S, abs=0.001)
    assert stored["key"] == "event-ttl"


@pytest.mark.emulator
def test_unreachable_firestore_is_a_transient_error(
    firestore_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sender.errors import LedgerUnavailableError
    from sender.ledger_firestore import FirestoreLedger

    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{free_port()}")  # nobody listens
    ledger = FirestoreLedger(collection="down", lease_s=LEASE_S, ttl_s=TTL_S, timeout_s=1.0)
    with pytest.raises(LedgerUnavailableError) as caught:
        ledger.claim("event-1")
    assert caught.value.http_status == 503
    assert caught.value.redeliver


# --- what the status answer and outcome events read (issue 14) -------------------------------

DEFERRED = Refusal(450, "4.2.1 mailbox busy")
BOUNCED = Failure(
    REJECTED, "rejected", "every recipient was refused", refused={"a@example.com": USER_UNKNOWN}
)
UNAVAILABLE = Failure(FAILED, "unavailable", "451 4.3.0 try later", smtp_code=451)


def status_of(ledger: Ledger, key: str) -> Status:
    status = ledger.status(key)
    assert status is not None
    return status


def test_unknown_key_has_no_status(make_ledger: LedgerFactory) -> None:
    assert make_ledger().status("never-seen") is None


def test_attempt_times_are_the_first_and_latest_claims(
    make_ledger: LedgerFactory, clock: FakeClock
) -> None:
    started = clock.now
    first = claimed(make_ledger().claim("event-1"))
    make_ledger().release(first, UNAVAILABLE)
    clock.advance(90)
    claimed(make_ledger().claim("event-1"))

    status = status_of(make_ledger(), "event-1")
    assert status.attempts == 2
    assert status.first_attempt_at == pytest.approx(started, abs=0.001)
    assert status.last_attempt_at == pytest.approx(started + 90, abs=0.001)


def test_a_rejected_attempt_is_remembered_and_still_never_stops_a_retry(
    make_ledger: LedgerFactory,
) -> None:
    first = claimed(make_ledger().claim("event-1"))
    assert first.previous_failure is None
    make_ledger().release(first, BOUNCED)

    rejected = status_of(make_ledger(), "event-1")
    assert rejected.state == REJECTED
    assert rejected.failure == BOUNCED
    assert dict(rejected.refused) == {"a@example.com": USER_UNKNOWN}
    assert rejected.accepted == ()
    assert rejected.message_id is None

    # The retry claims at once and sends to everyone, as if the key were new.
    retry = claimed(make_ledger().claim("event-1"))
    assert retry.owed is None
    assert not retry.taken_over
    assert dict(retry.refused) == {}  # the failed attempt's refusals decide nothing
    # It is told how the last attempt ended (a redelivered batch does not retry a rejection).
    assert retry.previous_failure == BOUNCED
    assert status_of(make_ledger(), "event-1").state == SENDING

    make_ledger().complete(retry, message_id=MID, accepted=["a@example.com"], refused={})
    sent = status_of(make_ledger(), "event-1")
    assert (sent.state, sent.failure, sent.attempts) == (SENT, None, 2)
    assert dict(sent.refused) == {}


def test_each_state_as_the_status_reports_it(make_ledger: LedgerFactory, clock: FakeClock) -> None:
    ledger = make_ledger()
    claimed(ledger.claim("sending"))  # its holder never reports back
    assert status_of(ledger, "sending").state == SENDING

    ledger.complete(
        claimed(ledger.claim("sent")), message_id=MID, accepted=["a@x.test"], refused={}
    )
    ledger.record_progress(
        claimed(ledger.claim("owed")),
        Attempt(
            message_id=MID,
            accepted=["a@x.test"],
            refused={"c@x.test": USER_UNKNOWN},
            owed=["b@x.test"],
        ),
    )
    ledger.complete(
        claimed(ledger.claim("some-bounced")),
        message_id=MID,
        accepted=["a@x.test"],
        refused={"c@x.test": USER_UNKNOWN},
    )
    ledger.release(claimed(ledger.claim("failed")), UNAVAILABLE)
    # Every recipient refused, some for good: recorded as progress, the attempt still failed.
    ledger.record_progress(
        claimed(ledger.claim("mixed")),
        Attempt(
            message_id="",
            accepted=[],
            refused={"c@x.test": USER_UNKNOWN},
            owed=["b@x.test"],
            failure=Failure(FAILED, "unavailable", "every recipient was refused"),
        ),
    )

    sent = status_of(ledger, "sent")
    assert (sent.state, sent.message_id, sent.accepted, sent.owed) == (
        SENT,
        MID,
        ("a@x.test",),
        (),
    )
    owed = status_of(ledger, "owed")
    assert (owed.state, owed.owed, dict(owed.refused)) == (
        PARTIAL,
        ("b@x.test",),
        {"c@x.test": USER_UNKNOWN},
    )
    assert status_of(ledger, "some-bounced").state == PARTIAL
    assert status_of(ledger, "some-bounced").owed == ()
    failed = status_of(ledger, "failed")
    assert (failed.state, failed.failure) == (FAILED, UNAVAILABLE)
    mixed = status_of(ledger, "mixed")
    assert (mixed.state, mixed.owed, dict(mixed.refused)) == (
        FAILED,
        ("b@x.test",),
        {"c@x.test": USER_UNKNOWN},
    )
    assert mixed.message_id is None

    # A holder that never reported back: its lease runs out and the key reads as failed.
    clock.advance(LEASE_S + 1)
    abandoned = status_of(ledger, "sending")
    assert abandoned.state == FAILED
    assert abandoned.failure is not None
    assert abandoned.failure.error == "abandoned"
    assert isinstance(ledger.claim("sending"), Claimed)  # and the next delivery takes it over


def test_a_failed_retry_of_a_partial_send_keeps_the_progress_and_reports_the_4xx_as_owed(
    make_ledger: LedgerFactory,
) -> None:
    first = claimed(make_ledger().claim("event-1"))
    make_ledger().record_progress(
        first,
        Attempt(message_id=MID, accepted=["a@example.com"], refused={}, owed=["b@example.com"]),
    )
    retry = claimed(make_ledger().claim("event-1"))
    failure = Failure(
        FAILED, "unavailable", "deferred", refused={"b@example.com": DEFERRED}, smtp_code=450
    )
    make_ledger().release(retry, failure)

    status = status_of(make_ledger(), "event-1")
    assert (status.state, status.accepted, status.owed) == (
        FAILED,
        ("a@example.com",),
        ("b@example.com",),
    )
    assert dict(status.refused) == {}  # a 4xx is owed, never a final refusal
    assert claimed(make_ledger().claim("event-1")).owed == ("b@example.com",)


@pytest.mark.emulator
@pytest.mark.usefixtures("firestore_env")
def test_firestore_documents_written_before_issue_14_still_read_and_update(
    clock: FakeClock,
) -> None:
    """A record as the previous version stored it (no attempt times, no failure field)."""
    from google.cloud import firestore

    from sender.ledger_firestore import FirestoreLedger, document_id

    collection = f"old-shape-{uuid.uuid4().hex[:12]}"
    old: dict[str, Any] = {
        "key": "pubsub:evt-old",
        "owner": None,
        "lease_until": None,
        "done": False,
        "message_id": MID,
        "accepted": ["a@example.com"],
        "refused": {},
        "owed": ["b@example.com"],
        "attempts": 1,
        "expire_at": datetime.fromtimestamp(clock.now + TTL_S, UTC),
        "updated_at": firestore.SERVER_TIMESTAMP,
    }
    firestore.Client().collection(collection).document(document_id("pubsub:evt-old")).set(old)
    ledger = FirestoreLedger(collection=collection, lease_s=LEASE_S, ttl_s=TTL_S, clock=clock)

    status = status_of(ledger, "pubsub:evt-old")
    assert (status.state, status.owed, status.attempts) == (PARTIAL, ("b@example.com",), 1)
    assert status.first_attempt_at is None  # unknown, not guessed
    assert status.last_attempt_at is None

    retry = claimed(ledger.claim("pubsub:evt-old"))
    assert retry.owed == ("b@example.com",)
    ledger.release(retry, UNAVAILABLE)
    after = status_of(ledger, "pubsub:evt-old")
    assert (after.state, after.attempts, after.failure) == (FAILED, 2, UNAVAILABLE)
    assert after.first_attempt_at is None
    assert after.last_attempt_at == pytest.approx(clock.now, abs=0.001)
