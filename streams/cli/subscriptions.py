"""``streams subscriptions``: the management API on the command line (``streams tokens``
is :mod:`streams.cli.tokens`).

Every command is one call of :class:`~streams.cli.client.ApiClient` against
``STREAMS_API_URL`` (a running ``streams worker``), authenticated with
``STREAMS_API_TOKEN``, else ``STREAMS_ADMIN_TOKEN``, else the development token
file. ``--json`` prints the API's JSON; without it, text for people. A signing
secret or token the API returns (create, rotate-secret, tokens create) is
printed once, with a line saying it will not be shown again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from streams.cli.common import (
    Duration,
    _client,
    _json_option,
    _print_once,
    _table,
    fail_cleanly,
    print_json,
    printable,
)

F = TypeVar("F", bound=Callable[..., Any])

SIGNING_PROFILES = ("standard", "prowlo", "prospektr", "stripe", "github", "none")
BODY_FORMATS = ("envelope", "keyed", "slack", "discord", "telegram")


class _RateLimit(click.ParamType):
    """Requests per second, or ``none`` for no limit (sent as JSON null)."""

    name = "N|none"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, (float, _Unlimited)):
            return value
        text = str(value).strip().lower()
        if text in ("none", "off", "unlimited"):
            return UNLIMITED
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):  # nan would be sent as JSON null: no limit at all
            self.fail(f"{value!r} is not a number of requests per second or `none`", param, ctx)
        return number


class _Unlimited:
    def __repr__(self) -> str:
        return "UNLIMITED"


UNLIMITED = _Unlimited()


def _parse_headers(values: Sequence[str]) -> dict[str, str]:
    """``Name: value`` options into a dict; a name given twice is a usage error."""
    out: dict[str, str] = {}
    seen: set[str] = set()
    for raw in values:
        name, sep, value = raw.partition(":")
        name = name.strip()
        if not sep or not name:
            raise click.BadParameter(f"{raw!r} is not `Name: value`", param_hint="'--header'")
        if name.lower() in seen:
            raise click.BadParameter(
                f"{name!r} given twice (header names are case-insensitive)",
                param_hint="'--header'",
            )
        seen.add(name.lower())
        out[name] = value.strip()
    return out


def _header_list(secret: Sequence[str], public: Sequence[str]) -> Any:
    """``--header`` (secret) and ``--public-header`` options as the API's ``headers``.

    Secret ones only: the object form every server version reads (a bare value is
    secret). With a public one: the list form, each header saying whether it is secret.
    """
    both = _parse_headers([*secret, *public])  # a name given twice, in either, is refused
    if not public:
        return both
    public_names = {name.lower() for name in _parse_headers(public)}
    return [
        {"name": name, "value": value, "secret": name.lower() not in public_names}
        for name, value in both.items()
    ]


def _shown_headers(sub: dict[str, Any]) -> str:
    """``Name: value`` of each header; a secret one is masked by the API and says so."""
    secret = set(sub.get("secret_headers") or [])
    shown = [
        f"{name}: {value}" + (" (secret)" if name in secret else "")
        for name, value in (sub.get("headers") or {}).items()
    ]
    return ", ".join(shown) or "(none)"


def _subscription_options(*, create: bool) -> Callable[[F], F]:
    """The options of ``create`` and ``update`` (on update every one is optional)."""

    def decorate(fn: F) -> F:
        opts: list[Callable[[F], F]] = [
            click.option(
                "--url", required=create, default=None, help="Where to POST (https; http in dev)."
            ),
            click.option(
                "--event-type",
                "event_types",
                multiple=True,
                required=create,
                help="Event type or pattern (`prospect.*`, `*`); repeat for more"
                + ("." if create else "; replaces the list."),
            ),
        ]
        if create:
            opts.append(
                click.option(
                    "--tenant", default=None, help="Tenant id (required with the admin token)."
                )
            )
        opts += [
            click.option("--description", default=None, help="Free text, at most 500 chars."),
            click.option(
                "--signing",
                type=click.Choice(SIGNING_PROFILES),
                default=None,
                help="Signing profile (default standard)" + ("." if create else "; cannot change."),
            ),
        ]
        if create:
            opts += [
                click.option(
                    "--secret", default=None, help="Your own signing secret (default: generated)."
                ),
                click.option(
                    "--no-secret",
                    is_flag=True,
                    help="Unsigned (prospektr only): send no secret at all.",
                ),
            ]
        opts += [
            click.option(
                "--header",
                "headers",
                multiple=True,
                metavar="'NAME: VALUE'",
                help="A header to send with every delivery, its value secret (encrypted at "
                "rest, shown masked); repeat for more"
                + ("." if create else "; with --public-header, replaces them all."),
            ),
            click.option(
                "--public-header",
                "public_headers",
                multiple=True,
                metavar="'NAME: VALUE'",
                help="A header whose value is not secret (stored and shown in clear); "
                "repeat for more.",
            ),
        ]
        if not create:
            opts.append(
                click.option("--clear-headers", is_flag=True, help="Remove every custom header.")
            )
        opts += [
            click.option(
                "--retry-schedule",
                default=None,
                metavar="default|none|5s,5m,...",
                help="`default`, `none` (one attempt) or delays such as 5s,5m,30m.",
            ),
            click.option(
                "--ordering",
                type=click.Choice(("unordered", "ordered")),
                default=None,
                help="Delivery order per tenant.",
            ),
            click.option(
                "--rate-limit",
                type=_RateLimit(),
                default=None,
                metavar="N|none",
                help="Requests per second; `none` for no limit.",
            ),
            click.option(
                "--max-in-flight",
                type=int,
                default=None,
                help="Concurrent requests (1-256).",
            ),
            click.option(
                "--timeout",
                type=Duration(as_text=True),
                default=None,
                help="Whole-request timeout, e.g. 10s or 10 (at most 30s).",
            ),
            click.option(
                "--body-format",
                type=click.Choice(BODY_FORMATS),
                default=None,
                help="Body shape (a Slack, Discord or Telegram URL picks its own by default).",
            ),
            click.option(
                "--chat-id",
                default=None,
                help="Telegram: the chat to post to (numeric id or @channelusername)"
                + ("." if create else "; `none` removes it."),
            ),
        ]
        if create:
            opts.append(click.option("--disabled", is_flag=True, help="Create it disabled."))
            opts.append(
                click.option(
                    "--idempotency-key",
                    default=None,
                    metavar="KEY",
                    help="Repeat a create whose answer was lost: the same key answers the "
                    "subscription it made, and its secret (default: a new key, reused on "
                    "this command's own retries).",
                )
            )
        opts.append(_json_option)
        for opt in reversed(opts):
            fn = opt(fn)
        return fn

    return decorate


def _common_body(
    *,
    url: str | None,
    event_types: Sequence[str],
    description: str | None,
    signing: str | None,
    headers: Sequence[str],
    retry_schedule: str | None,
    ordering: str | None,
    rate_limit: float | _Unlimited | None,
    max_in_flight: int | None,
    timeout: str | None,
    body_format: str | None,
    public_headers: Sequence[str] = (),
    chat_id: str | None = None,
) -> dict[str, Any]:
    """The request fields of the options given (API field names); absent ones are left out."""
    body: dict[str, Any] = {}
    if url is not None:
        body["url"] = url
    if event_types:
        body["event_types"] = list(event_types)
    if description is not None:
        body["description"] = description
    if signing is not None:
        body["signing"] = signing
    if headers or public_headers:
        body["headers"] = _header_list(headers, public_headers)
    if retry_schedule is not None:
        body["retry_schedule"] = retry_schedule.strip()
    if ordering is not None:
        body["ordering"] = ordering
    if rate_limit is not None:
        body["rate_limit"] = None if isinstance(rate_limit, _Unlimited) else rate_limit
    if max_in_flight is not None:
        body["max_in_flight"] = max_in_flight
    if timeout is not None:
        body["timeout"] = timeout
    if body_format is not None:
        body["body_format"] = body_format
    if chat_id is not None:
        body["chat_id"] = None if chat_id.strip().lower() == "none" else chat_id.strip()
    return body


def _state(sub: dict[str, Any]) -> str:
    state = str(sub.get("state", "?"))
    if state == "disabled" and sub.get("disabled_reason"):
        return f"disabled ({sub['disabled_reason']})"
    return state


def _schedule(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(f"{v:g}s" if isinstance(v, (int, float)) else str(v) for v in value)
    return str(value)


def _print_warnings(answer: dict[str, Any]) -> None:
    """The API's ``warnings`` (an event-type pattern that matches no known type), on
    stderr: accepted, but most likely a typo the user wants to hear about now."""
    for warning in answer.get("warnings") or []:
        click.echo(f"warning: {printable(str(warning))}", err=True)


def _print_subscription(sub: dict[str, Any]) -> None:
    secret = sub.get("secret") or {}
    if secret.get("set"):
        signing_state = "set"
        if secret.get("previous_valid_until"):
            signing_state += f" (previous secret valid until {secret['previous_valid_until']})"
    else:
        signing_state = "none (unsigned)"
    lines: list[tuple[str, Any]] = [
        ("id", sub.get("id")),
        ("tenant", sub.get("tenant_id")),
        ("url", sub.get("url")),
        ("description", sub.get("description") or ""),
        ("state", _state(sub)),
    ]
    if sub.get("state") == "disabled" and sub.get("disabled_at"):
        lines.append(("disabled at", sub["disabled_at"]))
    lines += [
        ("event types", ", ".join(sub.get("event_types") or [])),
        ("signing", sub.get("signing")),
        ("secret", signing_state),
    ]
    for key in sub.get("public_keys") or []:
        lines.append(("public key", key))
    lines.append(("headers", _shown_headers(sub)))
    rate = sub.get("rate_limit")
    timeout = sub.get("timeout")
    lines += [
        ("retry schedule", _schedule(sub.get("retry_schedule"))),
        ("ordering", sub.get("ordering")),
        ("rate limit", "none" if rate is None else f"{rate:g}/s"),
        ("max in flight", sub.get("max_in_flight")),
        ("timeout", "default" if timeout is None else f"{timeout:g}s"),
        ("body format", sub.get("body_format")),
        *([("chat id", sub["chat_id"])] if sub.get("chat_id") is not None else []),
        ("created", sub.get("created_at")),
        ("updated", sub.get("updated_at")),
        ("version", sub.get("version")),
    ]
    width = max(len(label) for label, _ in lines)
    for label, value in lines:
        shown = "" if value is None else printable(str(value))
        click.echo(f"{label + ':':<{width + 1}} {shown}".rstrip())


@click.group("subscriptions")
def subscriptions() -> None:
    """Webhook subscriptions, through the management API (STREAMS_API_URL)."""


@subscriptions.command("create")
@_subscription_options(create=True)
@fail_cleanly
def sub_create(
    url: str,
    event_types: tuple[str, ...],
    tenant: str | None,
    description: str | None,
    signing: str | None,
    secret: str | None,
    no_secret: bool,
    headers: tuple[str, ...],
    public_headers: tuple[str, ...],
    retry_schedule: str | None,
    ordering: str | None,
    rate_limit: float | _Unlimited | None,
    max_in_flight: int | None,
    timeout: str | None,
    body_format: str | None,
    chat_id: str | None,
    disabled: bool,
    idempotency_key: str | None,
    as_json: bool,
) -> None:
    """Create a subscription; its signing secret is printed once."""
    if secret is not None and no_secret:
        raise click.UsageError("--secret and --no-secret exclude each other")
    body = _common_body(
        url=url,
        event_types=event_types,
        description=description,
        signing=signing,
        headers=headers,
        public_headers=public_headers,
        retry_schedule=retry_schedule,
        ordering=ordering,
        rate_limit=rate_limit,
        max_in_flight=max_in_flight,
        timeout=timeout,
        body_format=body_format,
        chat_id=chat_id,
    )
    if tenant is not None:
        body = {"tenant_id": tenant, **body}
    if secret is not None:
        body["secret"] = secret
    elif no_secret:
        body["secret"] = None
    if disabled:
        body["enabled"] = False
    with _client() as client:
        created = client.create_subscription(body, idempotency_key=idempotency_key)
    _print_warnings(created)
    if as_json:
        print_json(created)
        return
    click.echo(f"created {created.get('id')}")
    detected = created.get("detected") or {}
    if detected.get("message"):
        click.echo(printable(str(detected["message"])))
    _print_subscription(created)
    signing_secret = created.get("signing_secret")
    if signing_secret:
        _print_once("signing secret", str(signing_secret))
    else:
        click.echo("")
        click.echo("no signing secret: deliveries are unsigned")


@subscriptions.command("list")
@click.option("--tenant", default=None, help="Only this tenant's (admin token).")
@click.option(
    "--state", type=click.Choice(("enabled", "disabled")), default=None, help="Only this state."
)
@_json_option
@fail_cleanly
def sub_list(tenant: str | None, state: str | None, as_json: bool) -> None:
    """List subscriptions (every page), as a table."""
    with _client() as client:
        listing = client.list_all_subscriptions(tenant_id=tenant, state=state)
    if as_json:
        print_json(listing)
        return
    subs: list[dict[str, Any]] = listing.get("data") or []
    if not subs:
        click.echo("no subscriptions")
        return
    rows = [
        [
            str(s.get("id", "")),
            str(s.get("tenant_id", "")),
            _state(s),
            ",".join(s.get("event_types") or []),
            str(s.get("url", "")),
        ]
        for s in subs
    ]
    _table(["ID", "TENANT", "STATE", "EVENT TYPES", "URL"], rows)


@subscriptions.command("show")
@click.argument("sub_id", metavar="ID")
@_json_option
@fail_cleanly
def sub_show(sub_id: str, as_json: bool) -> None:
    """Show one subscription (never its secret)."""
    with _client() as client:
        sub = client.show_subscription(sub_id)
    if as_json:
        print_json(sub)
    else:
        _print_subscription(sub)


@subscriptions.command("update")
@click.argument("sub_id", metavar="ID")
@_subscription_options(create=False)
@fail_cleanly
def sub_update(
    sub_id: str,
    url: str | None,
    event_types: tuple[str, ...],
    description: str | None,
    signing: str | None,
    headers: tuple[str, ...],
    public_headers: tuple[str, ...],
    clear_headers: bool,
    retry_schedule: str | None,
    ordering: str | None,
    rate_limit: float | _Unlimited | None,
    max_in_flight: int | None,
    timeout: str | None,
    body_format: str | None,
    chat_id: str | None,
    as_json: bool,
) -> None:
    """Change the options given; the others stay. Secrets: rotate-secret; state: enable/disable."""
    if (headers or public_headers) and clear_headers:
        raise click.UsageError("--header/--public-header and --clear-headers exclude each other")
    body = _common_body(
        url=url,
        event_types=event_types,
        description=description,
        signing=signing,
        headers=headers,
        public_headers=public_headers,
        retry_schedule=retry_schedule,
        ordering=ordering,
        rate_limit=rate_limit,
        max_in_flight=max_in_flight,
        timeout=timeout,
        body_format=body_format,
        chat_id=chat_id,
    )
    if clear_headers:
        body["headers"] = {}
    if not body:
        raise click.UsageError("nothing to update: give at least one option (see --help)")
    with _client() as client:
        sub = client.update_subscription(sub_id, body)
    _print_warnings(sub)
    if as_json:
        print_json(sub)
        return
    click.echo(f"updated {sub.get('id')}")
    _print_subscription(sub)


@subscriptions.command("delete")
@click.argument("sub_id", metavar="ID")
@fail_cleanly
def sub_delete(sub_id: str) -> None:
    """Delete a subscription: no more deliveries to it."""
    with _client() as client:
        client.delete_subscription(sub_id)
    click.echo(f"deleted {sub_id}")


@subscriptions.command("rotate-secret")
@click.argument("sub_id", metavar="ID")
@click.option(
    "--grace",
    type=Duration(as_text=True),
    default=None,
    help="How long the previous secret stays valid too, e.g. 24h or 3600 (default 24h, "
    "at most 7d).",
)
@click.option("--secret", default=None, help="Your own new secret (default: generated).")
@_json_option
@fail_cleanly
def sub_rotate(sub_id: str, grace: str | None, secret: str | None, as_json: bool) -> None:
    """Replace the signing secret; the new one is printed once."""
    with _client() as client:
        sub = client.rotate_secret(sub_id, grace=grace, secret=secret)
    if as_json:
        print_json(sub)
        return
    click.echo(f"rotated the signing secret of {sub.get('id', sub_id)}")
    previous = (sub.get("secret") or {}).get("previous_valid_until")
    if previous:
        click.echo(f"the previous secret stays valid until {previous}")
    else:
        click.echo("the previous secret is no longer valid")
    _print_once("signing secret", str(sub.get("signing_secret")))


@subscriptions.command("enable")
@click.argument("sub_id", metavar="ID")
@click.option(
    "--replay-parked",
    is_flag=True,
    help="Also send the deliveries parked in the DLQ while it was disabled.",
)
@_json_option
@fail_cleanly
def sub_enable(sub_id: str, replay_parked: bool, as_json: bool) -> None:
    """Enable a subscription: deliveries resume with new events; says what was parked
    while it was disabled and how to send it."""
    with _client() as client:
        sub = client.enable(sub_id, replay_parked=replay_parked)
    if as_json:
        print_json(sub)
        return
    shown_id = str(sub.get("id", sub_id))
    click.echo(f"enabled {printable(shown_id)}")
    for line in parked_lines(shown_id, sub.get("parked")):
        click.echo(line)


def parked_lines(sub_id: str, parked: Any) -> list[str]:
    """What ``enable`` answers about the deliveries parked while disabled, for people.

    The API's own hint names HTTP routes; these lines name the commands that do the same.
    """
    if not isinstance(parked, dict):
        return []  # it was not disabled: nothing was parked
    count = parked.get("count")
    noun = "delivery was" if count == 1 else "deliveries were"
    lines = [f"{count} {noun} parked in the DLQ while it was disabled"]
    if "replayed" in parked:
        lines.append(f"replayed {parked['replayed']} (replay {parked.get('replay_id')})")
    elif count:
        shown = printable(sub_id)
        # Not `enable --replay-parked` again: it is enabled now, so that would find nothing.
        lines.append(
            f"send them: streams dlq replay --subscription {shown} --reason subscription_disabled"
        )
    return lines


@subscriptions.command("disable")
@click.argument("sub_id", metavar="ID")
@click.option("--reason", default=None, help="Why (shown in listings; at most 500 chars).")
@_json_option
@fail_cleanly
def sub_disable(sub_id: str, reason: str | None, as_json: bool) -> None:
    """Disable a subscription: no deliveries until it is enabled again."""
    with _client() as client:
        sub = client.disable(sub_id, reason)
    if as_json:
        print_json(sub)
    else:
        reason_shown = sub.get("disabled_reason")
        suffix = f" ({reason_shown})" if reason_shown else ""
        click.echo(f"disabled {sub.get('id', sub_id)}{suffix}")


@subscriptions.command("test")
@click.argument("sub_id", metavar="ID")
@_json_option
@fail_cleanly
def sub_test(sub_id: str, as_json: bool) -> None:
    """Send a sample event to this subscription alone, now."""
    with _client() as client:
        queued = client.test(sub_id)
    if as_json:
        print_json(queued)
        return
    click.echo(
        f"queued test delivery {queued.get('delivery_id')} of a {queued.get('event_type')} "
        f"event ({queued.get('event_id')}) to {sub_id}"
    )
