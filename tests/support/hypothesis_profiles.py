"""Hypothesis settings for the property tests (`tests/test_properties.py`), as named profiles.

- ``ci`` (the default): a fixed budget, derandomized (the same examples on every run and machine,
  so CI never goes red on a new random draw), no example database written to the tree.
- ``explore``: ten times the examples on fresh random draws, for a developer hunting bugs:
  ``HYPOTHESIS_PROFILE=explore .venv/bin/pytest tests/test_properties.py``.

The properties share one SMTP test server across examples (a function-scoped fixture; each example
clears its records first), hence the suppressed health check.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

CI_EXAMPLES = 120
PROFILE_VARIABLE = "HYPOTHESIS_PROFILE"
# What both profiles share: TLS handshakes on a busy 2-core machine are slow, not wrong; no
# example database in the tree; the blob to replay a failure.
_SHARED = settings(
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def register() -> None:
    """Register ``ci`` and ``explore``; load the one named by ``HYPOTHESIS_PROFILE`` (``ci``)."""
    settings.register_profile("ci", _SHARED, max_examples=CI_EXAMPLES, derandomize=True)
    settings.register_profile("explore", _SHARED, max_examples=CI_EXAMPLES * 10)
    settings.load_profile(os.environ.get(PROFILE_VARIABLE) or "ci")
