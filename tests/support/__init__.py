"""Every test helper of smtp-sender, in one package (real parts, no mocks; fakes for unit tests).

Conftests only wire these into fixtures; tests import from here, never from a conftest.

- ``certs``: a test CA made at test time with trustme (`make_ca`, `make_untrusted_ca`).
- ``smtp_server``: an aiosmtpd server with TLS/STARTTLS/AUTH and fault injection
  (`SmtpTestServer`).
- ``fault_server``: a scripted SMTP server on raw sockets that misbehaves on purpose
  (`FaultServer`, `Script`, `reply`/`drip`/`hang`/`hang_up`), for the fault matrix.
- ``load``: concurrent keep-alive HTTP clients and latency summaries for the load run
  (`run_concurrently`, `Connection`, `Timings`), and `all_at_once`: calls released together on
  threads (racing claims, a cold token cache meeting several sends).
- ``hypothesis_profiles``: the ``ci`` / ``explore`` Hypothesis profiles.
- ``secret_manager_stub``: a plaintext gRPC Secret Manager that the real client talks to
  (`SecretManagerStub`; global and regional names, `names_asked`), also runnable as
  ``python -m tests.support.secret_manager_stub``.
- ``ff_process``: functions-framework as a real process (`FunctionsFrameworkProcess`), bounded
  waits on its log lines (`wait_for_log`, `message_is`).
- ``pubsub``: Pub/Sub CloudEvents and push envelopes for a Flask test client (`post_event`,
  `post_push`); ``pubsub_rest``: topics, push and pull subscriptions on the emulator
  (`PushTopic`, `PullTopic`, `pull`).
- ``emulators``: the gcloud Pub/Sub and Firestore emulators on loopback (`start`,
  `run_for_session`), also runnable as ``python -m tests.support.emulators``.
- ``fakes``: a rotatable secret source and a movable clock (`FakeSecretSource`, `FakeClock`).
- ``payloads``: webhook bodies from each system's documentation (`load`) and their variants
  (`resolved`, `incident`, `with_labels`); the example `/hook` templates (`EXAMPLE_TEMPLATES`).
- ``ledgers``: what ledger tests share (`LEASE_S`, `TTL_S`, `LedgerFactory`).
- ``webhook_credentials``: webhook credentials as callers send them (`hmac_sha256_signature`,
  `grafana_signature_headers`, `basic_auth_header`).
- ``checks``: shared assertions (nothing sent, misconfigured, retryable, no secret leaked) and
  log-line parsing.
- ``env`` / ``constants``: the function's variables (`function_env`), the ``sender_env``
  fixture's type, and the names and values the fixtures agree on.
- ``loopback``: the offline-gcloud environment (`OFFLINE_ENV`) and `free_port`.
- ``mta_tier``: Postfix + Dovecot (SASL, OAuth2 introspection) from a temp state dir on loopback,
  also runnable as ``python -m tests.support.mta_tier``; ``mta``: `MtaTier`, a running tier as
  tests use it; ``maildir``: what was delivered (`read_maildir`) and Postfix's session summaries.
- ``deploy``: running deploy.sh (dry-run, or against ``fake_gcloud``, a recording stand-in) and
  the real gcloud offline, plus the configurations the deploy tests run (`full_args`).
- ``dev_outbox``: the dev stack's SMTP outbox and page in process (`LocalOutbox`, `alert`).
- ``lifecycle``: `StartStop`, the ``with`` protocol every server and process above shares.
- ``fake_idp``: a fake identity provider (`FakeIdP`: Entra discovery and token, Google token,
  IAM signBlob/signJwt, GCE metadata, RFC 7662 introspection) that MSAL and google-auth talk to
  unchanged, with faults, revocation and request counts; what it knows and how it routes
  requests is ``idp_model``; ``oauth_accounts``: what an admin registers there for one mailbox
  (one helper per flow: `entra_app`, `google_key_account`, `google_keyless_account`,
  `refresh_token_account`; `admin_setup`: all four flows' profile ``oauth2`` objects; `IDP_FLOW`,
  `TENANT`, `MAILER`).
- ``connect_proxy``: a CONNECT proxy (`ConnectProxy`) that tunnels fixed public hosts (Google's
  IAM and token hosts, Entra's login host) to the fake IdP and refuses the rest.
- ``jwt_rs256``: RS256 JWT signing and checking for the fake IdP (`cryptography` only,
  independent of the libraries under test).
- ``check_cli``: `run_check`, ``python -m sender check`` as a subprocess, and what it printed
  (`CheckRun`: steps, the failed step and its hint).
- ``oauth_fetch``: `fetch_in_process`, one token fetch in a child process with a function's
  environment (the keyless flow needs the metadata server from process start).
- ``plain_listener``: `CountingListener`, a plain-TCP loopback port that counts connections
  (proof that nothing was requested of a URL the function must refuse).
- ``first_request``: `modules_loaded`, what a fresh interpreter imported after loading ``main``
  and, optionally, serving one HTTP or Pub/Sub request (the lean cold start's check).
"""
