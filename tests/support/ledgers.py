"""What the ledger tests share: lease and TTL lengths, and the factory type of `make_ledger`."""

from __future__ import annotations

from collections.abc import Callable

from sender.ledger import Ledger

LEASE_S = 60.0
TTL_S = 3_600.0

# Returns a ledger on the store under test; two calls act as two instances sharing that store.
LedgerFactory = Callable[[], Ledger]
