"""Shared test infrastructure for smtp-sender (real parts, no mocks).

Modules (names are stable; other test tiers import them):

- ``tests.support.certs``: a test CA made at test time with trustme (`make_ca`).
- ``tests.support.smtp_server``: an aiosmtpd server in a thread (`SmtpTestServer`).
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
- ``tests.support.fake_idp``: a fake identity provider (`FakeIdP`: Entra discovery and token,
  Google token, IAM signBlob/signJwt, GCE metadata, RFC 7662 introspection) that MSAL and
  google-auth talk to unchanged, with faults, revocation and request counts; what it knows and
  how it routes requests is ``tests.support.idp_model``.
- ``tests.support.connect_proxy``: a CONNECT proxy (`ConnectProxy`) that tunnels fixed public
  hosts (Google's IAM and token hosts, Entra's login host) to the fake IdP and refuses the rest.
- ``tests.support.jwt_rs256``: RS256 JWT signing and checking for the fake IdP (`cryptography`
  only, independent of the libraries under test).
- ``tests.support.oauth_fetch``: `fetch_in_process`, one token fetch in a child process with a
  function's environment (the keyless flow needs the metadata server from process start).
"""
