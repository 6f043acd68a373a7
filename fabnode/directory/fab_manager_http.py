"""The HTTP side of reading Fab-manager: its base URL, and a GET with the OpenAPI token.

The client (stdlib urllib) adds a deadline per request, a cap on the body and no redirects (a
redirect would carry the token elsewhere); every failure is a FabManagerError saying where and why.
"""

from __future__ import annotations

import math
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import BinaryIO

API = "/open_api/v1"
MAX_BODY = 8 * 1024 * 1024  # one page of 100 users is ~50 kB; the trainings index has descriptions


class FabManagerError(Exception):
    """Fab-manager could not be read, or answered something unusable; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Response:
    """One HTTP answer, body already capped."""

    status: int
    headers: Mapping[str, str]
    body: bytes


Get = Callable[[str], Response]  # URL -> answer; raises FabManagerError when there is none


def check_base_url(url: str) -> str:
    """The Fab-manager base URL (https://fablab.example.org), without a trailing /open_api/v1."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--url {url!r}: expected http(s)://HOST of the Fab-manager")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError(f"--url {url!r}: no user, password, query or fragment (the token is --token-file)")
    path = parts.path.rstrip("/")
    path = path.removesuffix(API)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def private_transport(base: str) -> bool:
    """Whether the token travels encrypted (https) or stays on this machine (loopback)."""
    parts = urllib.parse.urlsplit(base)
    return parts.scheme == "https" or (parts.hostname or "") in ("localhost", "127.0.0.1", "::1")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # the 3xx becomes an HTTPError: the token never follows a redirect


class HttpClient:
    """GETs with the OpenAPI token, a deadline per request and a cap on the body."""

    def __init__(self, token: str, timeout_s: float = 10.0, max_body: int | None = None) -> None:
        if not math.isfinite(timeout_s) or not 0.05 <= timeout_s <= 600:
            raise ValueError(f"timeout {timeout_s!r} s: 0.05 to 600 expected")
        self._token = token
        self._timeout = timeout_s
        self._max_body = MAX_BODY if max_body is None else max_body
        self._opener = urllib.request.build_opener(_NoRedirect)

    def __call__(self, url: str) -> Response:
        request = urllib.request.Request(url, headers={
            "Authorization": f"Token token={self._token}", "Accept": "application/json",
            "User-Agent": "fabnode-lab-sync"})
        deadline = time.monotonic() + self._timeout
        try:
            with self._opener.open(request, timeout=self._timeout) as answer:
                body = self._read(url, answer, deadline)
                return Response(answer.status, dict(answer.headers.items()), body)
        except urllib.error.HTTPError as exc:
            raise FabManagerError(_http_reason(url, exc)) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, TimeoutError):
                raise FabManagerError(self._late(url)) from None
            raise FabManagerError(f"{url}: cannot connect ({reason}); nothing was changed") from None
        except TimeoutError:
            raise FabManagerError(self._late(url)) from None
        except OSError as exc:
            raise FabManagerError(f"{url}: connection failed ({exc}); nothing was changed") from None

    def _late(self, url: str) -> str:
        return f"{url}: no answer within {self._timeout:g} s (--timeout); nothing was changed"

    def _read(self, url: str, answer: BinaryIO, deadline: float) -> bytes:
        read = answer.read
        chunks: list[bytes] = []
        size = 0
        while True:
            if time.monotonic() > deadline:  # a server that drips bytes resets no per-read timeout
                raise TimeoutError
            chunk = read(65536)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > self._max_body:
                raise FabManagerError(f"{url}: body: more than {self._max_body:,} bytes; nothing was changed")
            chunks.append(chunk)


def _http_reason(url: str, exc: urllib.error.HTTPError) -> str:
    if exc.code == 401:
        return (f"{url}: 401 Unauthorized: Fab-manager refused the token (make one under Admin > "
                "OpenAPI clients); nothing was changed")
    if 300 <= exc.code < 400:
        target = exc.headers.get("Location", "?") if exc.headers else "?"
        return f"{url}: redirected ({exc.code}) to {target}: give that address as --url; nothing was changed"
    return f"{url}: HTTP {exc.code} {exc.reason}; nothing was changed"
