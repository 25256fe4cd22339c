"""Local development stack: the function, an embedded SMTP outbox and a page to read it.

`python -m devstack` (what `make dev` runs) starts everything on loopback;
`python -m devstack.send_example` sends a sample alert through it.
"""
