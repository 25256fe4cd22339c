"""Shared test infrastructure for smtp-sender (real parts, no mocks).

Modules (names are stable; other test tiers import them):

- ``tests.support.certs``: a test CA made at test time with trustme (`make_ca`).
- ``tests.support.smtp_server``: an aiosmtpd server in a thread (`SmtpTestServer`).
- ``tests.support.secret_manager_stub``: a plaintext gRPC Secret Manager (`SecretManagerStub`),
  also runnable as ``python -m tests.support.secret_manager_stub``.
- ``tests.support.ff_process``: functions-framework as a real process (`FunctionsFrameworkProcess`)
  plus CloudEvent / Pub/Sub push helpers.
- ``tests.support.payloads``: builders for Pub/Sub CloudEvents shared by in-process and process
  tests.
"""
