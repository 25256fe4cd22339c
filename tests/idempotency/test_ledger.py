"""The ledger's contract, against the in-memory store and the real Firestore emulator."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from sender.ledger import Busy, Claim, Claimed, ClaimResult, Duplicate, Ledger
from sender.ledger_memory import MemoryLedger
from sender.outcome import Refusal
from tests.support.fakes import FakeClock
from tests.support.ledgers import LEASE_S, TTL_S, LedgerFactory
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
        message_id=MID,
        accepted=["a@example.com"],
        refused={"c@example.com": USER_UNKNOWN},
        owed=["b@example.com"],
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
        first, message_id=MID, accepted=["a@example.com"], refused={}, owed=["b@example.com"]
    )
    retry = claimed(make_ledger().claim("event-1"))
    # A confused caller reporting `a` as owed again (it was accepted before) changes nothing.
    entry = make_ledger().record_progress(
        retry, message_id=MID, accepted=[], refused={}, owed=["a@example.com", "b@example.com"]
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
        first, message_id=MID, accepted=["a@example.com"], refused={}, owed=["b@example.com"]
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
    start = threading.Barrier(racers)

    def race(ledger: Ledger) -> ClaimResult:
        start.wait(timeout=30)
        return ledger.claim("contended")

    with ThreadPoolExecutor(racers) as pool:
        results = list(pool.map(race, ledgers))
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
    start = threading.Barrier(writers)

    def report(index: int) -> None:
        start.wait(timeout=30)
        ledgers[index].record_progress(
            claim, message_id=MID, accepted=[f"r{index}@x.test"], refused={}, owed=["late@x.test"]
        )

    with ThreadPoolExecutor(writers) as pool:
        list(pool.map(report, range(writers)))
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
