"""Names and values the behaviour tests and fixtures agree on."""

from __future__ import annotations

from tests.support.pubsub import PROJECT

SMTP_USER = "alerts@example.com"
# Non-ASCII on purpose: AUTH must encode UTF-8 (RFC 4616), and the string must never leak into a
# log line, a response or an exception text.
CANARY_PASSWORD = "Canary-Pässwort-ß-🔑-7731"
PROFILE_FROM = "Alerts <alerts@example.com>"
SECRET_ID = "smtp-profile"
SECRET_NAME = f"projects/{PROJECT}/secrets/{SECRET_ID}"
