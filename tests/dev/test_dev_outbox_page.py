"""The outbox page over HTTP: listing, escaping, the sandboxed body, attachment downloads."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from email.message import Message
from urllib.parse import unquote

import pytest

from tests.support.dev_outbox import LocalOutbox, alert


def get(url: str) -> tuple[int, Message, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def test_list_is_newest_first_decoded_and_escaped(local_outbox: LocalOutbox) -> None:
    local_outbox.send(alert("older alert"))
    local_outbox.send(
        alert("<b>Disk</b> 91% on db-1 · 디스크", sender="운영팀 <ops-team@example.com>")
    )

    status, _, body = get(local_outbox.url + "/")
    page = body.decode()
    assert status == 200
    assert "&lt;b&gt;Disk&lt;/b&gt; 91% on db-1 · 디스크" in page
    assert "<b>Disk</b>" not in page
    assert "운영팀 &lt;ops-team@example.com&gt;" in page
    assert page.index("디스크") < page.index("older alert")

    _, _, state = get(local_outbox.url + "/api/state")
    assert json.loads(state)["count"] == 2


def test_message_page_sandboxes_html_and_serves_attachments(local_outbox: LocalOutbox) -> None:
    csv = b"mount,used\n/var,91%\n"
    pdf = bytes(range(256)) * 4
    local_outbox.send(
        alert(
            "with parts",
            text="text part here",
            html="<p>html part here</p>",
            attachments=[("보고서 2024.csv", "text/csv", csv), ("r.pdf", "application/pdf", pdf)],
        )
    )
    (message_id,) = local_outbox.outbox.ids()

    status, headers, body = get(f"{local_outbox.url}/messages/{message_id}")
    page = body.decode()
    assert status == 200
    iframe = re.search(r"<iframe\b[^>]*>", page)
    assert iframe is not None
    assert re.search(r'\ssandbox=""', iframe[0])
    assert f'src="/messages/{message_id}/body.html"' in iframe[0]
    assert "text part here" in page
    assert "보고서 2024.csv" in page

    status, headers, body = get(f"{local_outbox.url}/messages/{message_id}/body.html")
    assert status == 200
    # Written out, not imported from devstack.web: a weakened policy must fail this test.
    csp = "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    assert headers["Content-Security-Policy"] == csp
    assert "<p>html part here</p>" in body.decode()

    status, headers, body = get(f"{local_outbox.url}/messages/{message_id}/attachments/0")
    assert status == 200
    assert body == csv
    disposition = headers["Content-Disposition"]
    assert disposition.startswith("attachment;")
    encoded = disposition.split("filename*=UTF-8''", 1)[1]
    assert unquote(encoded) == "보고서 2024.csv"

    status, _, body = get(f"{local_outbox.url}/messages/{message_id}/attachments/1")
    assert (status, body) == (200, pdf)


@pytest.mark.parametrize(
    "path", ["/messages/nope", "/messages/..%2f..%2fetc%2fpasswd", "/messages/x/attachments/0"]
)
def test_unknown_messages_are_404(local_outbox: LocalOutbox, path: str) -> None:
    local_outbox.send(alert("only one"))
    status, _, _ = get(local_outbox.url + path)
    assert status == 404


def test_message_page_escapes_subject_headers_text_and_filenames(local_outbox: LocalOutbox) -> None:
    script = "<script>alert(1)</script>"
    img = '<img src=x onerror="alert(2)">'
    message = alert(
        f"subject {script}",
        text=f"text {img}",
        attachments=[(f"a{script}.txt", "text/plain", b"x")],
    )
    message["X-Ticket"] = f"header {img}"
    local_outbox.send(message)
    (message_id,) = local_outbox.outbox.ids()

    _, _, body = get(f"{local_outbox.url}/messages/{message_id}")
    page = body.decode()
    assert "<script>alert(1)" not in page
    assert "<img src=x" not in page
    assert "subject &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "header &lt;img src=x onerror=" in page
    assert "text &lt;img src=x onerror=" in page
    assert "a&lt;script&gt;alert(1)&lt;/script&gt;.txt" in page


def test_a_deleted_message_is_gone_from_the_page(local_outbox: LocalOutbox) -> None:
    """Deleting an .eml (the way to clean the outbox) takes it off the list and its pages,
    even right after it was opened."""
    local_outbox.send(
        alert("to be deleted", html="<p>html</p>", attachments=[("a.txt", "text/plain", b"a")])
    )
    (message_id,) = local_outbox.outbox.ids()
    for suffix in ("", "/body.html", "/attachments/0"):
        status, _, _ = get(f"{local_outbox.url}/messages/{message_id}{suffix}")
        assert status == 200, suffix

    (local_outbox.outbox.directory / f"{message_id}.eml").unlink()

    for suffix in ("", "/body.html", "/attachments/0", "/raw"):
        status, _, _ = get(f"{local_outbox.url}/messages/{message_id}{suffix}")
        assert status == 404, suffix
    _, _, body = get(local_outbox.url + "/")
    assert "to be deleted" not in body.decode()
    _, _, state = get(local_outbox.url + "/api/state")
    assert json.loads(state)["count"] == 0
