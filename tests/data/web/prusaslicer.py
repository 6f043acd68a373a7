"""The multipart bodies PrusaSlicer and Cura send to OctoPrint's POST /api/files/local.

From PrusaSlicer's src/slic3r/Utils/OctoPrint.cpp (OctoPrint::upload): `form_add("print", ...)`,
`form_add("path", parent folder)`, then `form_add_file("file", source, name)`, framed by libcurl's
mime code (a boundary of 24 dashes and 16 hex digits; the file part as application/octet-stream).
"""

from __future__ import annotations

import secrets


def prusaslicer_body(data: bytes, filename: str, print_: bool = False, path: str = "",
                     boundary: str | None = None) -> tuple[bytes, str]:  # fmt: skip
    """The multipart body libcurl builds for PrusaSlicer's upload, and its Content-Type."""
    boundary = boundary or "------------------------" + secrets.token_hex(8)
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="print"\r\n\r\n'
        f"{'true' if print_ else 'false'}\r\n".encode(),
        f'--{boundary}\r\nContent-Disposition: form-data; name="path"\r\n\r\n{path}\r\n'.encode(),
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n",
        f"--{boundary}--\r\n".encode(),
    ]
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


QT_BOUNDARY = "boundary_.oOo._MTA2NzE1MjM4NTg0MTE5Nzg3"  # QHttpMultiPart's: a fixed prefix, then base64


def cura_body(data: bytes, filename: str, boundary: str = QT_BOUNDARY) -> tuple[bytes, str]:
    """The body Cura's OctoPrint Connection plugin sends (OctoPrintOutputDevice._startPrint): QHttpParts
    `select`, `print`, then `file` with no Content-Type of its own; Qt's boundary form."""
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="select"\r\n\r\ntrue\r\n'.encode(),
        f'--{boundary}\r\nContent-Disposition: form-data; name="print"\r\n\r\ntrue\r\n'.encode(),
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n\r\n'.encode()
        + data + b"\r\n",
        f"--{boundary}--\r\n".encode(),
    ]
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"
