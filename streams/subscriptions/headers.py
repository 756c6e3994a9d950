"""Custom headers of a subscription: what callers send, what is stored, what is shown.

Users are told to authenticate to their endpoint with a custom header rather
than credentials in the URL, so a header value is a secret unless its owner
says otherwise. A secret value is stored only as a Fernet ciphertext (the key
and code of the signing secrets, :class:`~streams.subscriptions.secrets.SecretBox`)
and shown as :data:`MASK`; a header marked ``"secret": false`` is stored and
shown in clear.

Input, on create and update (``headers`` replaces every header), in either form::

    {"X-Api-Key": "k-123", "X-Team": {"value": "growth", "secret": false}}
    [{"name": "X-Api-Key", "value": "k-123"}, {"name": "X-Team", "value": "growth",
      "secret": false}]

A bare string value is secret: the form every earlier client sent keeps
working and gains the protection.

Stored, in the :class:`~streams.records.Subscription` record:

- ``headers``: name -> clear value, the headers marked not secret;
- ``secret_headers``: name -> ciphertext, the secret ones.

A record written before ``secret_headers`` existed lacks it (``None``); its
``headers`` are then values written in clear before anyone could mark them,
and are treated as secret: masked in views, sent as they are. Such a record
is re-written encrypted (:func:`migrate`) the next time it is saved, by the
API or by an automatic disable.

Pure apart from the box's encryption; the callers do the I/O.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from streams.errors import InvalidRequestError
from streams.records import Subscription
from streams.subscriptions.secrets import SecretBox

MAX_HEADERS = 20
MAX_HEADER_VALUE = 1024
#: What a secret value is shown as: the same for every value, so not even its length leaks.
MASK = "********"
# Used with fullmatch: `$` alone also matches before a trailing newline.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}")  # RFC 9110 §5.6.2
_ENTRY_FIELDS = frozenset({"name", "value", "secret"})


@dataclass(frozen=True, slots=True)
class Header:
    """One custom header as a caller gave it: the clear value and whether it is secret."""

    name: str
    value: str
    secret: bool = True


def _bad(field: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(f"`{field}`: {message}", field=field)


def _entries(value: Any) -> Iterable[tuple[str, Any, Any, str]]:
    """(name, value, secret flag, field path) of each header in either input form."""
    if isinstance(value, Mapping):
        for name, given in value.items():
            field = f"headers.{name}"
            if isinstance(given, Mapping):
                unknown = set(given) - {"value", "secret"}
                if unknown:
                    raise _bad(
                        field, f"unknown field `{sorted(unknown)[0]}`; allowed: secret, value"
                    )
                if "value" not in given:
                    raise _bad(field, 'an object needs `value` (and may have `"secret": false`)')
                yield name, given["value"], given.get("secret", True), field
            else:
                yield name, given, True, field
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            field = f"headers[{i}]"
            if not isinstance(item, Mapping) or "name" not in item or "value" not in item:
                raise _bad(field, 'an object {"name": ..., "value": ..., "secret": true|false}')
            unknown = set(item) - _ENTRY_FIELDS
            if unknown:
                raise _bad(
                    field, f"unknown field `{sorted(unknown)[0]}`; allowed: name, secret, value"
                )
            name = item["name"]
            if not isinstance(name, str):
                raise _bad(f"{field}.name", "must be a string")
            yield name, item["value"], item.get("secret", True), f"headers.{name}"
        return
    raise _bad(
        "headers",
        'an object of header name to value (`{"X-Api-Key": "..."}`, secret) or to '
        '`{"value": ..., "secret": false}`, or a list of `{"name", "value", "secret"}`',
    )


def parse(value: Any, *, reserved: frozenset[str]) -> list[Header]:
    """Validate the ``headers`` of a request; a :class:`InvalidRequestError` names the header."""
    entries = list(_entries(value))
    if len(entries) > MAX_HEADERS:
        raise _bad("headers", f"at most {MAX_HEADERS} headers")
    out: list[Header] = []
    seen: set[str] = set()
    for name, val, secret, field in entries:
        if not _TOKEN.fullmatch(name):
            raise _bad(field, "not a valid header name (RFC 9110 token)")
        lower = name.lower()
        if lower in reserved or lower.startswith("webhook-"):
            raise _bad(
                field, "reserved: signature, framing and identity headers cannot be overridden"
            )
        if not isinstance(val, str):
            raise _bad(field, "must be a string")
        if len(val) > MAX_HEADER_VALUE or any(
            (ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in val
        ):
            raise _bad(field, f"at most {MAX_HEADER_VALUE} characters, no control characters")
        if not isinstance(secret, bool):
            raise _bad(f"{field}.secret", "true or false (JSON booleans)")
        if lower in seen:
            raise _bad(field, "given twice (header names are case-insensitive)")
        seen.add(lower)
        out.append(Header(name, val, secret))
    return out


def seal(entries: Iterable[Header], box: SecretBox) -> tuple[dict[str, str], dict[str, str]]:
    """The record's ``headers`` and ``secret_headers`` for ``entries``: the clear values of
    the public headers, and the ciphertexts of the secret ones."""
    clear: dict[str, str] = {}
    sealed: dict[str, str] = {}
    for h in entries:
        if h.secret:
            sealed[h.name] = box.encrypt_text(h.value)
        else:
            clear[h.name] = h.value
    return clear, sealed


def is_legacy(sub: Subscription) -> bool:
    """Written before header values could be encrypted: its ``headers`` are clear secrets."""
    return sub.secret_headers is None


def migrate(sub: Subscription, box: SecretBox) -> Subscription:
    """``sub`` with the clear values of a pre-encryption record encrypted (as secret); any
    other record unchanged. Called on every save, so each old record is rewritten once."""
    if not is_legacy(sub):
        return sub
    clear, sealed = seal((Header(name, value) for name, value in sub.headers.items()), box)
    return dataclasses.replace(sub, headers=clear, secret_headers=sealed)


def secret_names(sub: Subscription) -> list[str]:
    """The names of the secret headers (a pre-encryption record's are all secret)."""
    if sub.secret_headers is None:
        return list(sub.headers)
    return list(sub.secret_headers)


def view(sub: Subscription) -> dict[str, str]:
    """Every custom header, secret values masked: what the API, the CLI and logs may show."""
    if sub.secret_headers is None:
        return dict.fromkeys(sub.headers, MASK)
    return {**sub.headers, **dict.fromkeys(sub.secret_headers, MASK)}


def reveal(sub: Subscription, box: SecretBox) -> dict[str, str]:
    """Every custom header with its clear value, to send. Raises
    :class:`~streams.errors.StreamsError` (never showing a value) if a ciphertext cannot
    be decrypted with the configured keys."""
    if not sub.secret_headers:
        return sub.headers
    opened = {
        name: box.decrypt_text(token, what=f"header {name}")
        for name, token in sub.secret_headers.items()
    }
    return {**sub.headers, **opened}
