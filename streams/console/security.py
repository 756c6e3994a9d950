"""The console's protections as pure functions: headers, cookies, CSRF and Origin checks.

- **CSP**: everything from this origin, nothing inline (no inline script,
  style or event handler), ``frame-ancestors`` from
  ``STREAMS_CONSOLE_FRAME_ANCESTORS`` (default ``'none'``: nobody frames it).
- **Cookies**: a top-level session is ``HttpOnly; SameSite=Strict`` (``Secure``
  outside development). An embedded session, opened inside another site's
  frame, is ``SameSite=None; Secure; Partitioned`` (CHIPS): browsers that block
  third-party cookies still keep it, in a jar keyed to the site that frames
  the console, so it is useless anywhere else.
- **CSRF**: a synchronizer token per session, compared in constant time with
  the form field ``csrf_token`` or the ``X-CSRF-Token`` header; and when the
  browser sends ``Origin``, it must be the console's own.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

SESSION_COOKIE = "streams_console"
#: The one-time cookie that carries a new signing secret to the page that shows it.
ONCE_COOKIE = "streams_console_once"
#: The cookie of the admin sign-in form (double-submit token before a session exists).
SIGNIN_COOKIE = "streams_console_signin"
COOKIE_PATH = "/console"


def content_security_policy(frame_ancestors: str) -> str:
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "form-action 'self'",
            "base-uri 'none'",
            "object-src 'none'",
            f"frame-ancestors {frame_ancestors}",
        )
    )


def security_headers(frame_ancestors: str) -> dict[str, str]:
    """Headers of every console response (pages, errors, static files)."""
    headers = {
        "Content-Security-Policy": content_security_policy(frame_ancestors),
        "X-Content-Type-Options": "nosniff",
        # Sign-in links carry a token in their path: never send it to another origin.
        # (`no-referrer` would also make Chromium send `Origin: null` on our own forms.)
        "Referrer-Policy": "same-origin",
        "Cross-Origin-Opener-Policy": "same-origin",
    }
    if frame_ancestors == "'none'":
        headers["X-Frame-Options"] = "DENY"  # browsers older than CSP level 2
    return headers


def cookie_header(
    name: str,
    value: str,
    *,
    max_age: int,
    embed: bool,
    secure: bool,
    path: str = COOKIE_PATH,
) -> str:
    """A ``Set-Cookie`` value (``max_age`` 0 deletes the cookie).

    Written by hand because the standard library's cookie writer (which
    aiohttp uses) has no ``Partitioned`` attribute before Python 3.14.
    """
    parts = [f"{name}={value}", f"Path={path}", f"Max-Age={max_age}", "HttpOnly"]
    if embed:
        parts += ["SameSite=None", "Secure", "Partitioned"]
    else:
        parts.append("SameSite=Strict")
        if secure:
            parts.append("Secure")
    return "; ".join(parts)


def same_origin(origin: str | None, scheme: str, host: str) -> bool:
    """Whether an ``Origin`` header names this console (absent: nothing to check)."""
    if origin is None:
        return True
    if origin == "null":
        return False  # sandboxed frames, or a redirect from elsewhere
    parts = urlsplit(origin)
    return parts.scheme == scheme and parts.netloc.lower() == host.lower()


def csrf_ok(expected: str, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(expected.encode(), (sent or "").encode())


def server_timing(seconds: float) -> str:
    """A ``Server-Timing`` header value: the server's time for a response, in ms."""
    return f"app;dur={max(0.0, seconds) * 1000:.1f}"
