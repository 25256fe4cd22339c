"""smtp-sender's benchmark: prints figures and ratios measured side by side in one run; asserts
nothing (absolute times on a shared machine mean little, ratios from one run do).

    .venv/bin/python bench/bench.py [--quick] [--sends N] [--pool-size N] ...   (make bench)

Everything runs on loopback against the real-MTA tier's Postfix (implicit TLS + AUTH, started in a
temporary state directory; needs root and ``bash tests/mta/install.sh``), with the SMTP profile
read through the real google-cloud-secret-manager client from the gRPC Secret Manager stand-in:

(a) a raw persistent smtplib loop: one session, N messages;
(b) the seed's way, a new session per message: ``bench/seed_function.py`` under
    functions-framework, driven over HTTP one request after another;
(c) smtp-sender warm (functions-framework running ``main.py send_http``), sequential over HTTP;
(d) the same instance under concurrent clients: throughput, and the most SMTP sessions open at
    once as Postfix logged them;
(e) a batch via ``POST /batch`` on that instance (up to ``SMTP_POOL_SIZE`` messages at once);
(f) cold spawn -> first email accepted, for (b) and (c);
(g) VmRSS of the smtp-sender worker after the first and the second number of sends;
then the ratios against issue 11's targets and a ``python -X importtime`` summary of ``main``.

The pool settings (``--pool-size`` etc.) go to smtp-sender's process as ``SMTP_POOL_*``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, Python puts bench/ first on the path, where `bench` would be this file: the
# project root goes there instead, so `bench` is the package and `tests`, `main` are importable.
if sys.path and Path(sys.path[0]).resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)
elif str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    from bench import options, report, suite
    from bench.stack import BenchError, bench_stack

    opts = options.parse(argv)
    started = time.monotonic()
    try:
        with bench_stack(keep=opts.keep_state) as stack:
            results = suite.run(stack, opts)
            header = report.header(stack.smtp_port, opts)
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    print(report.render(results, header))
    print(f"\n(whole run: {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
