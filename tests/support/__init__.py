"""Shared test infrastructure for smtp-sender (real parts, no mocks).

Modules (names are stable; other test tiers import them):

- ``tests.support.certs``: a test CA made at test time with trustme (`make_ca`).
- ``tests.support.smtp_server``: an aiosmtpd server in a thread (`SmtpTestServer`).
- ``tests.support.fault_server``: a scripted SMTP server on raw sockets that misbehaves on purpose
  (`FaultServer`, `Script`, `reply`/`drip`/`hang`/`hang_up`), for the fault matrix.
- ``tests.support.load``: concurrent keep-alive HTTP clients and latency summaries for the load
  run (`run_concurrently`, `Connection`, `Timings`).
- ``tests.support.hypothesis_profiles``: the ``ci`` / ``explore`` Hypothesis profiles.
- ``tests.support.secret_manager_stub``: a plaintext gRPC Secret Manager (`SecretManagerStub`),
  also runnable as ``python -m tests.support.secret_manager_stub``.
- ``tests.support.ff_process``: functions-framework as a real process (`FunctionsFrameworkProcess`)
  plus CloudEvent / Pub/Sub push helpers.
- ``tests.support.pubsub``: builders for Pub/Sub CloudEvents and push envelopes shared by
  in-process and process tests (`post_event` / `post_push` for a Flask test client).
- ``tests.support.checks``: shared assertions (nothing sent, misconfigured, retryable, no secret
  leaked) and log-line parsing.
- ``tests.support.env`` / ``tests.support.constants``: the function's variables (`function_env`),
  the ``sender_env`` fixture's type, and the names and values the fixtures agree on.
- ``tests.support.loopback``: the offline-gcloud environment (`OFFLINE_ENV`) and `free_port`.
- ``tests.support.lifecycle``: `StartStop`, the ``with`` protocol the servers above share.
"""
