"""Sending a job as PrusaSlicer's "Send to printer" does: OctoPrint's POST /api/files/local.

From PrusaSlicer's src/slic3r/Utils/OctoPrint.cpp (OctoPrint::upload): the form fields `print`
("true" for "Upload and Print"), `path` (the parent folder of the upload's name, "" for none), then
the file part `file` (application/octet-stream), framed as libcurl's mime code frames them (a boundary
of 24 dashes and 16 hex digits); the key in X-Api-Key; libcurl sends `Expect: 100-continue` and
waits for the server's go-ahead before the body.
"""

from __future__ import annotations

import http.client
import json
import secrets
import select
import socket
import urllib.parse
from pathlib import Path
from typing import Any

USER_AGENT = "PrusaSlicer/2.9.2"


def multipart(data: bytes, filename: str, print_: bool, path: str = "") -> tuple[bytes, str]:
    """The body and Content-Type PrusaSlicer (libcurl) sends for one upload."""
    boundary = "------------------------" + secrets.token_hex(8)
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="print"\r\n\r\n'
        f"{'true' if print_ else 'false'}\r\n".encode(),
        f'--{boundary}\r\nContent-Disposition: form-data; name="path"\r\n\r\n{path}\r\n'.encode(),
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n",
        f"--{boundary}--\r\n".encode(),
    ]
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def send_to_printer(url: str, key: str, file: Path, print_: bool = True, timeout_s: float = 60.0
                    ) -> tuple[int, dict[str, Any]]:  # fmt: skip
    """Upload `file` to the OctoPrint API at `url` as PrusaSlicer does; the status and the JSON reply."""
    where = urllib.parse.urlsplit(url)
    body, content_type = multipart(file.read_bytes(), file.name, print_)
    conn = http.client.HTTPConnection(where.hostname or "127.0.0.1", where.port or 80, timeout=timeout_s)
    try:
        conn.putrequest("POST", "/api/files/local", skip_accept_encoding=True)
        for name, value in (("User-Agent", USER_AGENT), ("Accept", "*/*"), ("X-Api-Key", key),
                            ("Content-Length", str(len(body))), ("Content-Type", content_type),
                            ("Expect", "100-continue")):  # fmt: skip
            conn.putheader(name, value)
        conn.endheaders()
        sock = conn.sock
        # As libcurl: wait (briefly) for `100 Continue`; a refusal (401, 413...) comes instead of it.
        answered = sock is not None and bool(select.select([sock], [], [], 1.0)[0])
        if sock is not None and answered and not sock.recv(16, socket.MSG_PEEK).startswith(b"HTTP/1.1 100"):
            response = conn.getresponse()
            return response.status, json.loads(response.read() or b"{}")
        conn.send(body)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()
