"""Every test helper of smtp-sender, in one package (real parts, no mocks; fakes for unit tests).

Conftests only wire these into fixtures; tests import from here, never from a conftest.

- ``certs``: a test CA made at test time with trustme (`make_ca`, `make_untrusted_ca`).
- ``smtp_server``: an aiosmtpd server with TLS/STARTTLS/AUTH and fault injection
  (`SmtpTestServer`).
- ``secret_manager_stub``: a plaintext gRPC Secret Manager that the real client talks to
  (`SecretManagerStub`), also runnable as ``python -m tests.support.secret_manager_stub``.
- ``ff_process``: functions-framework as a real process (`FunctionsFrameworkProcess`), bounded
  waits on its log lines (`wait_for_log`, `message_is`).
- ``pubsub``: Pub/Sub CloudEvents and push envelopes for a Flask test client (`post_event`,
  `post_push`); ``pubsub_rest``: topics and push subscriptions on the emulator (`PushTopic`).
- ``emulators``: the gcloud Pub/Sub and Firestore emulators on loopback (`start`,
  `run_for_session`), also runnable as ``python -m tests.support.emulators``.
- ``fakes``: a rotatable secret source and a movable clock (`FakeSecretSource`, `FakeClock`).
- ``payloads``: webhook bodies from each system's documentation (`load`) and their variants
  (`resolved`, `incident`, `with_labels`); the example `/hook` templates (`EXAMPLE_TEMPLATES`).
- ``ledgers``: what ledger tests share (`LEASE_S`, `TTL_S`, `LedgerFactory`).
- ``checks``: shared assertions (nothing sent, misconfigured, retryable, no secret leaked) and
  log-line parsing.
- ``env`` / ``constants``: the function's variables (`function_env`), the ``sender_env``
  fixture's type, and the names and values the fixtures agree on.
- ``loopback``: the offline-gcloud environment (`OFFLINE_ENV`) and `free_port`.
- ``lifecycle``: `StartStop`, the ``with`` protocol every server and process above shares.
"""
