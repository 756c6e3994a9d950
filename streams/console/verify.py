"""How a receiver verifies our requests, per signing profile: the headers and short examples.

Written for the console's "How to verify" page. Each example is complete
enough to paste: it reads the raw body (verification must use the exact
bytes received, before any JSON parsing) and compares in constant time.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Recipe:
    profile: str
    headers: tuple[tuple[str, str], ...]
    signed: str
    python: str
    node: str
    notes: str = ""


_STANDARD_PY = """import base64, hashlib, hmac, time

def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    msg_id = headers["webhook-id"]
    ts = headers["webhook-timestamp"]
    if abs(time.time() - int(ts)) > 300:
        return False  # too old or from the future: a replay
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{ts}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for sig in headers["webhook-signature"].split():
        version, _, value = sig.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return True
    return False
"""

_STANDARD_NODE = """const crypto = require("node:crypto");

function verify(secret, headers, rawBody /* Buffer */) {
  const id = headers["webhook-id"], ts = headers["webhook-timestamp"];
  if (Math.abs(Date.now() / 1000 - Number(ts)) > 300) return false;
  const key = Buffer.from(secret.replace(/^whsec_/, ""), "base64");
  const expected = crypto.createHmac("sha256", key)
    .update(`${id}.${ts}.`).update(rawBody).digest();
  return headers["webhook-signature"].split(" ").some((sig) => {
    const [version, value] = sig.split(",");
    const got = Buffer.from(value || "", "base64");
    return version === "v1" && got.length === expected.length &&
      crypto.timingSafeEqual(got, expected);
  });
}
"""


def _hex_py(header: str, message: str, prefix: str, extra: str = "") -> str:
    return f'''import hashlib, hmac

def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
{extra}    mac = hmac.new(secret.encode(), {message}, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers["{header.lower()}"], "{prefix}" + mac)
'''


def _hex_node(header: str, message: str, prefix: str, extra: str = "") -> str:
    return f'''const crypto = require("node:crypto");

function verify(secret, headers, rawBody /* Buffer */) {{
{extra}  const mac = crypto.createHmac("sha256", secret){message}.digest("hex");
  const expected = Buffer.from("{prefix}" + mac);
  const got = Buffer.from(headers["{header.lower()}"] || "");
  return got.length === expected.length && crypto.timingSafeEqual(got, expected);
}}
'''


_STRIPE_PY = """import hashlib, hmac, time

def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    fields = [part.split("=", 1) for part in headers["stripe-signature"].split(",")]
    ts = next(v for k, v in fields if k == "t")
    if abs(time.time() - int(ts)) > 300:
        return False
    mac = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return any(k == "v1" and hmac.compare_digest(v, mac) for k, v in fields)
"""

_STRIPE_NODE = """const crypto = require("node:crypto");

function verify(secret, headers, rawBody /* Buffer */) {
  const fields = headers["stripe-signature"].split(",").map((p) => p.split("="));
  const ts = (fields.find(([k]) => k === "t") || [])[1];
  if (!ts || Math.abs(Date.now() / 1000 - Number(ts)) > 300) return false;
  const mac = Buffer.from(crypto.createHmac("sha256", secret)
    .update(ts + ".").update(rawBody).digest("hex"));
  return fields.some(([k, v]) => k === "v1" && Buffer.from(v).length === mac.length &&
    crypto.timingSafeEqual(Buffer.from(v), mac));
}
"""

_TS_PY = (
    '    ts = headers["prowlo-timestamp"]\n'
    "    if abs(time.time() - int(ts)) > 300:\n"
    "        return False\n"
)
_TS_NODE = (
    '  const ts = headers["prowlo-timestamp"];\n'
    "  if (Math.abs(Date.now() / 1000 - Number(ts)) > 300) return false;\n"
)

RECIPES: dict[str, Recipe] = {
    "standard": Recipe(
        profile="standard",
        headers=(
            ("webhook-id", "the delivery id: the same on every retry (your idempotency key)"),
            ("webhook-timestamp", "unix seconds when this attempt was signed"),
            ("webhook-signature", "space-separated `v1,<base64>`: one per active secret"),
        ),
        signed="`{webhook-id}.{webhook-timestamp}.{raw body}`, HMAC-SHA256 keyed by the "
        "base64-decoded part of the secret after `whsec_`",
        python=_STANDARD_PY,
        node=_STANDARD_NODE,
        notes="During a secret rotation the header carries a signature for each secret: "
        "accept a match on any of them. Secrets starting `whsk_` sign with ed25519 "
        "(`v1a,`): verify those with the public key (`whpk_`) shown on the endpoint.",
    ),
    "prowlo": Recipe(
        profile="prowlo",
        headers=(
            ("Prowlo-Timestamp", "unix seconds when this attempt was signed"),
            ("Prowlo-Signature", "`v1=<hex>`: the current secret's signature"),
            ("Prowlo-Event", "the event type"),
        ),
        signed="`{Prowlo-Timestamp}.{raw body}`, HMAC-SHA256 keyed by the secret's text",
        python="import time\n"
        + _hex_py("Prowlo-Signature", 'ts.encode() + b"." + body', "v1=", _TS_PY),
        node=_hex_node("Prowlo-Signature", '.update(ts + ".").update(rawBody)', "v1=", _TS_NODE),
    ),
    "prospektr": Recipe(
        profile="prospektr",
        headers=(("X-Prospektr-Signature", "`sha256=<hex>`, only when a secret is set"),),
        signed="the raw body, HMAC-SHA256 keyed by the secret's text",
        python=_hex_py("X-Prospektr-Signature", "body", "sha256="),
        node=_hex_node("X-Prospektr-Signature", ".update(rawBody)", "sha256="),
        notes="Without a secret the requests carry no signature at all.",
    ),
    "stripe": Recipe(
        profile="stripe",
        headers=(("Stripe-Signature", "`t=<unix seconds>,v1=<hex>[,v1=<hex>...]`"),),
        signed="`{t}.{raw body}`, HMAC-SHA256 keyed by the whole secret text (`whsec_` included)",
        python=_STRIPE_PY,
        node=_STRIPE_NODE,
    ),
    "github": Recipe(
        profile="github",
        headers=(
            ("X-Hub-Signature-256", "`sha256=<hex>`"),
            ("X-GitHub-Delivery", "the delivery id"),
            ("X-GitHub-Event", "the event type"),
        ),
        signed="the raw body, HMAC-SHA256 keyed by the secret's text",
        python=_hex_py("X-Hub-Signature-256", "body", "sha256="),
        node=_hex_node("X-Hub-Signature-256", ".update(rawBody)", "sha256="),
    ),
}
