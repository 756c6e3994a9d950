"""The customers' own verifiers accept what our profiles send.

Prowlo and Prospektr publish, in their webhook docs, the code their customers
paste to verify a request. The tests below read those documents at test time
(from ``../shared/reference/`` next to the repository), cut the verification
code out of them, and run it (Node.js, Python with a stand-in ``flask``, and
the curl/openssl recipe) against headers and bodies our profiles produced.
Nothing of the documents' code is kept in this repository: if a document
changes, these tests run the new text.

Skipped when the reference directory, ``node`` or the shell tools are absent.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from streams.signing import PROFILES, SignatureInput, generate_secret

REFERENCE_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "reference"

# How each document is recognised (file names are not relied upon).
PROWLO_MARKER = "Prowlo-Signature"
PROSPEKTR_MARKER = "X-Prospektr-Signature"

# A body with non-ASCII text, as JSON bodies may carry: the Prowlo Node
# verifier decodes the body as UTF-8 before hashing it.
BODY = json.dumps(
    {
        "type": "crawl.run.completed",
        "id": "d_01H8XYZ",
        "data": {"watcher_name": "Café founders ☕", "matched": 12},
    },
    ensure_ascii=False,
    separators=(",", ":"),
).encode("utf-8")
TAMPERED = BODY.replace(b'"matched":12', b'"matched":13')

TIMEOUT = 60  # seconds per subprocess


# --- Reading the documents ----------------------------------------------------------


def _document(marker: str) -> str:
    if not REFERENCE_DIR.is_dir():
        pytest.skip(f"reference documents not found: {REFERENCE_DIR} is not a directory")
    for path in sorted(REFERENCE_DIR.glob("*.txt")):
        text = path.read_text(encoding="utf-8")
        if marker in text:
            return text
    pytest.fail(f"no document in {REFERENCE_DIR} mentions {marker!r}")


def _cut(text: str, start: str, end: str) -> str:
    """The text from ``start`` up to and including the first ``end`` after it."""
    i = text.find(start)
    if i < 0:
        pytest.fail(f"the reference document changed: {start!r} is no longer in it")
    j = text.find(end, i + len(start))
    if j < 0:
        pytest.fail(f"the reference document changed: no {end!r} after {start!r}")
    return text[i : j + len(end)]


def _prospektr_node_verify() -> str:
    # The `verify` function of the "Verifying the signature" section, with its import.
    return _cut(_document(PROSPEKTR_MARKER), "import { createHmac", "\n}")


def _prowlo_node_example() -> str:
    # The whole "Node.js (Express)" example, from its first import to the end of
    # the `app.post` handler.
    return _cut(_document(PROWLO_MARKER), "import crypto from 'node:crypto';", "\n});")


def _prowlo_flask_example() -> str:
    return _cut(_document(PROWLO_MARKER), "import hashlib", "return ('', 200)")


def _prowlo_curl_recipe() -> str:
    return _cut(_document(PROWLO_MARKER), "TIMESTAMP=", """awk '{print "v1="$2}'""")


# --- Running them ---------------------------------------------------------------------


def _require(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool!r} is not on PATH")


def _run(argv: list[str], cwd: Path, **env: str) -> dict[str, Any]:
    done = subprocess.run(
        argv,
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"{argv[0]} failed:\n{done.stdout}\n{done.stderr}"
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


PROSPEKTR_HARNESS = """\
import { readFileSync } from 'node:fs';
import { verify } from './prospektr_verify.mjs';

const body = readFileSync(process.env.BODY_FILE);
let accepted = false;
let error = null;
try {
  accepted = verify(body, process.env.SIGNATURE_HEADER, process.env.PROSPEKTR_SECRET);
} catch (e) {
  error = String(e);  // e.g. timingSafeEqual on buffers of different lengths
}
console.log(JSON.stringify({ accepted, error }));
"""


def _prospektr_node(tmp_path: Path, header: str, body: bytes, secret: str) -> dict[str, Any]:
    _require("node")
    (tmp_path / "prospektr_verify.mjs").write_text(
        _prospektr_node_verify() + "\nexport { verify };\n", encoding="utf-8"
    )
    (tmp_path / "run.mjs").write_text(PROSPEKTR_HARNESS, encoding="utf-8")
    (tmp_path / "body").write_bytes(body)
    return _run(
        ["node", "run.mjs"],
        tmp_path,
        BODY_FILE=str(tmp_path / "body"),
        SIGNATURE_HEADER=header,
        PROSPEKTR_SECRET=secret,
    )


# A stand-in for `express`: enough for the example to register its route.
EXPRESS_STUB = """\
const routes = [];
function express() {
  return {
    use() {},
    post(path, handler) { routes.push({ path, handler }); },
  };
}
express.raw = () => (req, res, next) => next();
express.routes = routes;
module.exports = express;
"""

PROWLO_NODE_HARNESS = """\
import { readFileSync } from 'node:fs';
import express from 'express';

await import('./prowlo_example.mjs');
const route = express.routes.find((r) => r.path === '/prowlo');
const headers = {};
for (const [name, value] of Object.entries(JSON.parse(process.env.REQUEST_HEADERS))) {
  headers[name.toLowerCase()] = value;  // HTTP header names are case-insensitive
}
// What express.raw() hands the handler: the body as a Buffer.
const req = { body: readFileSync(process.env.BODY_FILE), header: (n) => headers[n.toLowerCase()] };
const res = {
  statusCode: 200,
  sent: null,
  status(code) { this.statusCode = code; return this; },
  send(body) { this.sent = body; return this; },
};
route.handler(req, res);
console.log(JSON.stringify({ status: res.statusCode, body: res.sent }));
"""


def _prowlo_node(
    tmp_path: Path, headers: dict[str, str], body: bytes, secret: str
) -> dict[str, Any]:
    _require("node")
    stub = tmp_path / "node_modules" / "express"
    stub.mkdir(parents=True)
    (stub / "package.json").write_text('{"name": "express", "main": "index.js"}\n')
    (stub / "index.js").write_text(EXPRESS_STUB, encoding="utf-8")
    (tmp_path / "prowlo_example.mjs").write_text(_prowlo_node_example(), encoding="utf-8")
    (tmp_path / "run.mjs").write_text(PROWLO_NODE_HARNESS, encoding="utf-8")
    (tmp_path / "body").write_bytes(body)
    return _run(
        ["node", "run.mjs"],
        tmp_path,
        BODY_FILE=str(tmp_path / "body"),
        REQUEST_HEADERS=json.dumps(headers),
        PROWLO_WEBHOOK_SECRET=secret,
    )


# A stand-in for `flask`, put in sys.modules before the example runs.
FLASK_HARNESS = """\
import json
import os
import sys
import types
from pathlib import Path


class Abort(Exception):
    def __init__(self, code):
        super().__init__(code)
        self.code = code


class Headers:
    def __init__(self, items):
        self._items = {k.lower(): v for k, v in items.items()}

    def get(self, name, default=None):
        return self._items.get(name.lower(), default)


class Request:
    def __init__(self, headers, data):
        self.headers = Headers(headers)
        self.data = data

    def get_json(self, force=False):
        return json.loads(self.data)


class Flask:
    def __init__(self, import_name):
        self.routes = {}

    def post(self, rule):
        def register(view):
            self.routes[rule] = view
            return view
        return register


def abort(code):
    raise Abort(code)


flask = types.ModuleType("flask")
flask.Flask = Flask
flask.abort = abort
flask.request = Request(
    json.loads(os.environ["REQUEST_HEADERS"]), Path(os.environ["BODY_FILE"]).read_bytes()
)
sys.modules["flask"] = flask

example = Path(sys.argv[1])
namespace = {"__name__": "prowlo_flask_example"}
exec(compile(example.read_text(encoding="utf-8"), str(example), "exec"), namespace)
try:
    status = namespace["app"].routes["/prowlo"]()[1]
except Abort as exc:
    status = exc.code
print(json.dumps({"status": status}))
"""


def _prowlo_flask(
    tmp_path: Path, headers: dict[str, str], body: bytes, secret: str
) -> dict[str, Any]:
    (tmp_path / "prowlo_flask_example.py").write_text(_prowlo_flask_example(), encoding="utf-8")
    (tmp_path / "harness.py").write_text(FLASK_HARNESS, encoding="utf-8")
    (tmp_path / "body").write_bytes(body)
    return _run(
        [sys.executable, "harness.py", "prowlo_flask_example.py"],
        tmp_path,
        BODY_FILE=str(tmp_path / "body"),
        REQUEST_HEADERS=json.dumps(headers),
        PROWLO_WEBHOOK_SECRET=secret,
    )


def _signed(
    profile: str, secrets: tuple[str, ...], *, timestamp: int | None = None
) -> dict[str, str]:
    inp = SignatureInput(
        msg_id="d_01H8XYZ",
        timestamp=int(time.time()) if timestamp is None else timestamp,
        body=BODY,
        event_type="crawl.run.completed",
        secrets=secrets,
    )
    return PROFILES[profile].headers(inp)


# --- Prospektr --------------------------------------------------------------------------


def test_prospektrs_node_verifier_accepts_our_request(tmp_path: Path) -> None:
    secret = generate_secret("prospektr")
    headers = _signed("prospektr", (secret,))
    result = _prospektr_node(tmp_path, headers["X-Prospektr-Signature"], BODY, secret)
    assert result == {"accepted": True, "error": None}


def test_prospektrs_node_verifier_accepts_our_request_during_a_rotation(tmp_path: Path) -> None:
    current, previous = generate_secret("prospektr"), generate_secret("prospektr")
    headers = _signed("prospektr", (current, previous))
    result = _prospektr_node(tmp_path, headers["X-Prospektr-Signature"], BODY, current)
    assert result == {"accepted": True, "error": None}


def test_prospektrs_node_verifier_rejects_a_tampered_body(tmp_path: Path) -> None:
    secret = generate_secret("prospektr")
    headers = _signed("prospektr", (secret,))
    result = _prospektr_node(tmp_path, headers["X-Prospektr-Signature"], TAMPERED, secret)
    assert result == {"accepted": False, "error": None}


def test_prospektrs_node_verifier_rejects_another_secret(tmp_path: Path) -> None:
    headers = _signed("prospektr", (generate_secret("prospektr"),))
    result = _prospektr_node(
        tmp_path, headers["X-Prospektr-Signature"], BODY, generate_secret("prospektr")
    )
    assert result == {"accepted": False, "error": None}


# --- Prowlo: Node.js (Express) -----------------------------------------------------------


def test_prowlos_node_example_accepts_our_request(tmp_path: Path) -> None:
    secret = generate_secret("prowlo")
    result = _prowlo_node(tmp_path, _signed("prowlo", (secret,)), BODY, secret)
    assert result == {"status": 200, "body": "ok"}


def test_prowlos_node_example_rejects_a_tampered_body(tmp_path: Path) -> None:
    secret = generate_secret("prowlo")
    result = _prowlo_node(tmp_path, _signed("prowlo", (secret,)), TAMPERED, secret)
    assert result == {"status": 401, "body": "bad signature"}


def test_prowlos_node_example_rejects_a_stale_timestamp(tmp_path: Path) -> None:
    # Why the caller stamps a fresh timestamp at every attempt, retries included.
    secret = generate_secret("prowlo")
    stale = _signed("prowlo", (secret,), timestamp=int(time.time()) - 3600)
    result = _prowlo_node(tmp_path, stale, BODY, secret)
    assert result == {"status": 401, "body": "stale timestamp"}


# --- Prowlo: Python (Flask) -----------------------------------------------------------------


def test_prowlos_flask_example_accepts_our_request(tmp_path: Path) -> None:
    secret = generate_secret("prowlo")
    result = _prowlo_flask(tmp_path, _signed("prowlo", (secret,)), BODY, secret)
    assert result == {"status": 200}


def test_prowlos_flask_example_accepts_our_request_during_a_rotation(tmp_path: Path) -> None:
    current, previous = generate_secret("prowlo"), generate_secret("prowlo")
    result = _prowlo_flask(tmp_path, _signed("prowlo", (current, previous)), BODY, current)
    assert result == {"status": 200}


def test_prowlos_flask_example_rejects_a_tampered_body(tmp_path: Path) -> None:
    secret = generate_secret("prowlo")
    result = _prowlo_flask(tmp_path, _signed("prowlo", (secret,)), TAMPERED, secret)
    assert result == {"status": 401}


# --- Prowlo: the curl/openssl recipe ----------------------------------------------------


def test_prowlos_openssl_recipe_computes_our_signature_header(tmp_path: Path) -> None:
    _require("bash", "openssl", "awk")
    recipe = _prowlo_curl_recipe()
    timestamp = re.search(r"^TIMESTAMP=(\d+)$", recipe, re.MULTILINE)
    body = re.search(r"^BODY='([^']*)'$", recipe, re.MULTILINE)
    assert timestamp, f"the recipe no longer sets TIMESTAMP:\n{recipe}"
    assert body, f"the recipe no longer sets BODY:\n{recipe}"
    secret = generate_secret("prowlo")
    done = subprocess.run(
        ["bash", "-c", recipe],
        cwd=tmp_path,
        env={**os.environ, "PROWLO_WEBHOOK_SECRET": secret},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    ours = PROFILES["prowlo"].headers(
        SignatureInput(
            msg_id="evt_test",
            timestamp=int(timestamp.group(1)),
            body=body.group(1).encode("utf-8"),
            event_type="crawl.run.completed",
            secrets=(secret,),
        )
    )
    assert done.stdout.strip() == ours["Prowlo-Signature"] == ours["X-Prowlo-Signature"]
