"""`make bench`: smtp-sender measured against a raw smtplib loop and the seed's bare function, on
the real-MTA tier's Postfix, in one run (see `bench.bench` for what it prints)."""
