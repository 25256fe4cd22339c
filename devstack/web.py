"""The outbox page: a small Mailpit-style inbox over the outbox directory.

Every page is rendered with Jinja2 autoescaping. A message's html part is served from its
own URL with a `sandbox` CSP (no scripts, no same-origin, nothing fetched but inline data),
and shown in an `<iframe sandbox="">`, so neither the header nor the iframe alone has to hold.
"""

from __future__ import annotations

import functools
import threading
from io import BytesIO
from pathlib import Path
from typing import Any

from flask import Flask, Response, abort, jsonify, render_template, send_file
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from devstack import message_view
from devstack.outbox import Outbox, UnknownMessageError

_HERE = Path(__file__).parent

#: The outbox's own pages: scripts and styles from its static files only.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
#: A message's html part: its own opaque origin, no scripts, nothing loaded but inline data.
BODY_CSP = "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'"
#: What an attachment may do if a browser renders it instead of saving it: nothing.
ATTACHMENT_CSP = "sandbox; default-src 'none'"


class _SummaryCache:
    """Parsed list rows by id: stored messages never change, so parse each once."""

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox
        self._rows: dict[str, message_view.Summary] = {}
        self._lock = threading.Lock()

    def rows(self) -> list[message_view.Summary]:
        ids = self._outbox.ids()
        rows: list[message_view.Summary] = []
        with self._lock:
            for gone in self._rows.keys() - set(ids):
                del self._rows[gone]
            for message_id in ids:
                row = self._rows.get(message_id)
                if row is None:
                    try:
                        data = self._outbox.read(message_id)
                        received = self._outbox.received(message_id)
                    except UnknownMessageError:
                        continue
                    row = message_view.summarize(message_id, received, data)
                    self._rows[message_id] = row
                rows.append(row)
        return rows


def create_app(outbox: Outbox) -> Flask:
    """The WSGI app for one outbox directory."""
    app = Flask(
        __name__,
        template_folder=str(_HERE / "templates"),
        static_folder=str(_HERE / "static"),
    )
    cache = _SummaryCache(outbox)

    # Opening a message fetches the page and then its body.html (the iframe), and maybe
    # attachments: parse it once for all of them. Stored messages never change; a few
    # recent ones are enough, and bound the memory big attachments take.
    @functools.lru_cache(maxsize=4)
    def parsed(message_id: str) -> message_view.MessageView:
        return message_view.view(message_id, outbox.received(message_id), outbox.read(message_id))

    def load(message_id: str) -> message_view.MessageView:
        try:
            outbox.path(message_id)  # deleted since it was parsed: a 404, cached or not
            return parsed(message_id)
        except UnknownMessageError:
            abort(404)

    @app.after_request
    def _security_headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.get("/")
    def index() -> str:
        return render_template("index.html", rows=cache.rows(), directory=outbox.directory)

    @app.get("/fragments/list")
    def list_fragment() -> str:
        return render_template("_list.html", rows=cache.rows())

    @app.get("/api/state")
    def state() -> Response:
        """Tiny and cheap: the page polls it to notice new mail."""
        ids = outbox.ids()
        return jsonify(count=len(ids), latest=ids[0] if ids else None)

    @app.get("/api/messages")
    def messages() -> Response:
        return jsonify(
            [
                {
                    "id": row.id,
                    "received": row.received.isoformat(),
                    "from": row.sender,
                    "to": row.to,
                    "subject": row.subject,
                    "size": row.size,
                }
                for row in cache.rows()
            ]
        )

    @app.get("/messages/<message_id>")
    def message(message_id: str) -> str:
        return render_template(
            "message.html", message=load(message_id), envelope=outbox.envelope(message_id)
        )

    @app.get("/messages/<message_id>/body.html")
    def html_body(message_id: str) -> Response:
        html = load(message_id).html
        if html is None:
            abort(404)
        response = Response(html, mimetype="text/html")
        response.headers["Content-Security-Policy"] = BODY_CSP
        return response

    @app.get("/messages/<message_id>/attachments/<int:index>")
    def attachment(message_id: str, index: int) -> Any:
        parts = load(message_id).attachments
        if not 0 <= index < len(parts):
            abort(404)
        part = parts[index]
        # send_file writes both filename= (ASCII fallback) and filename*=UTF-8''.. (RFC 5987).
        response = send_file(
            BytesIO(part.content),
            mimetype=part.content_type,
            as_attachment=True,
            download_name=part.filename,
        )
        response.headers["Content-Security-Policy"] = ATTACHMENT_CSP
        return response

    @app.get("/messages/<message_id>/raw")
    def raw(message_id: str) -> Any:
        try:
            path = outbox.path(message_id)
        except UnknownMessageError:
            abort(404)
        return send_file(
            path, mimetype="message/rfc822", as_attachment=True, download_name=path.name
        )

    @app.template_filter("localtime")
    def _localtime(value: Any) -> str:
        return str(value.astimezone().strftime("%Y-%m-%d %H:%M:%S"))

    @app.template_filter("filesize")
    def _filesize(size: int) -> str:
        if size < 1024:
            return f"{size} B"
        if size < 1024 * 1024:
            return f"{size / 1024:.1f} KB"
        return f"{size / (1024 * 1024):.1f} MB"

    return app


class _QuietHandler(WSGIRequestHandler):
    """The page polls every second; logging each request would drown the function's logs."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return


class OutboxWebServer:
    """The outbox page on a background thread, stoppable and port-freeing."""

    def __init__(self, host: str, port: int, outbox: Outbox) -> None:
        self._server: BaseWSGIServer = make_server(
            host, port, create_app(outbox), threaded=True, request_handler=_QuietHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="outbox-web", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
