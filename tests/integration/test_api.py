"""The management API: tenant isolation on every path, URL rules, secrets shown once."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.harness import Api

pytestmark = pytest.mark.integration

URL = "http://127.0.0.1:9/hook"


@pytest.fixture(scope="module")
def tenants(admin: Api) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tenant in ("alpha", "beta"):
        resp = admin.call("POST", "/v1/tokens", {"tenant_id": tenant, "description": "test"})
        assert resp.status_code == 201, resp.text
        out[tenant] = admin.as_token(resp.json()["token"])
    return out


def test_requests_without_a_valid_token_are_refused(admin: Api) -> None:
    for token in ("nope", "stk_tok_0000.bad", "Basic"):
        resp = admin.as_token(token).call("GET", "/v1/subscriptions")
        assert resp.status_code == 401
        assert resp.json()["error"]["code"] == "unauthorized"
    assert admin.http.get("/v1/subscriptions", headers={"Authorization": ""}).status_code == 401
    assert admin.as_token("nope").call("GET", "/healthz").status_code == 200


def test_a_tenant_token_sees_and_changes_only_its_own_tenant_on_every_path(
    tenants: dict[str, Api], admin: Api
) -> None:
    alpha, beta = tenants["alpha"], tenants["beta"]
    mine = alpha.create(url=URL, event_types=["*"])
    theirs = beta.create(url=URL, event_types=["*"])
    assert mine["tenant_id"] == "alpha"
    assert theirs["tenant_id"] == "beta"

    listed = alpha.call("GET", "/v1/subscriptions").json()["data"]
    assert {s["id"] for s in listed} == {mine["id"]}
    assert alpha.call("GET", "/v1/subscriptions", tenant_id="beta").status_code == 422

    other = f"/v1/subscriptions/{theirs['id']}"
    for method, path, body in [
        ("GET", other, None),
        ("PATCH", other, {"description": "hijack"}),
        ("DELETE", other, None),
        ("POST", other + "/rotate-secret", {}),
        ("POST", other + "/enable", {}),
        ("POST", other + "/disable", {}),
        ("POST", other + "/test", {}),
    ]:
        resp = alpha.call(method, path, body)
        assert resp.status_code == 404, (method, path, resp.text)
    assert (
        alpha.call(
            "POST", "/v1/subscriptions", {"tenant_id": "beta", "url": URL, "event_types": ["*"]}
        ).status_code
        == 422
    )
    for method, path in [("GET", "/v1/tokens"), ("POST", "/v1/tokens"), ("DELETE", "/v1/tokens/x")]:
        assert alpha.call(method, path, {"tenant_id": "alpha"}).status_code == 401

    # Beta's subscription is untouched, and the admin sees both tenants.
    again = beta.call("GET", other).json()
    assert (again["description"], again["state"]) == ("", "enabled")
    everyone = {s["id"] for s in admin.call("GET", "/v1/subscriptions").json()["data"]}
    assert {mine["id"], theirs["id"]} <= everyone


def test_a_revoked_tenant_token_stops_working(admin: Api) -> None:
    created = admin.call("POST", "/v1/tokens", {"tenant_id": "gamma"}).json()
    gamma = admin.as_token(created["token"])
    assert gamma.call("GET", "/v1/subscriptions").status_code == 200
    listing = admin.call("GET", "/v1/tokens").json()["data"]
    assert all("sha256" not in t and "token" not in t for t in listing)
    assert admin.call("DELETE", f"/v1/tokens/{created['id']}").status_code == 204
    assert gamma.call("GET", "/v1/subscriptions").status_code == 401


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/hook",
        "http://192.168.1.10/hook",
        "http://172.16.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/hook",
        "http://127.0.0.2/hook",
        "http://0.0.0.0/hook",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.2]/hook",
        "http://[::ffff:10.0.0.1]/hook",
        "http://[fe80::1]/hook",
        "http://[fd00:ec2::254]/hook",
        "http://2130706434/hook",
        "http://0177.0.0.2/hook",
        "http://0x7f.0.0.2/hook",
        "http://10.1/hook",
        "http://224.0.0.1/hook",
        "ftp://example.com/hook",
        "http://user:pass@example.com/hook",
    ],
)
def test_urls_to_refused_destinations_are_a_422_naming_the_url(admin: Api, url: str) -> None:
    resp = admin.call(
        "POST", "/v1/subscriptions", {"tenant_id": "ssrf", "url": url, "event_types": ["*"]}
    )
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["field"] == "url"


def test_an_allowlisted_address_is_accepted(admin: Api) -> None:
    assert admin.create(tenant_id="ssrf", url="http://127.0.0.1:8/ok", event_types=["*"])["url"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": URL}, "event_types"),
        ({"url": URL, "event_types": ["*"], "timeout": "1m"}, "timeout"),
        (
            {"url": URL, "event_types": ["*"], "headers": {"content-type": "x"}},
            "headers.content-type",
        ),
        ({"url": URL, "event_types": ["*"], "unknown": 1}, "unknown"),
    ],
)
def test_bad_fields_are_422_never_500(admin: Api, body: dict[str, Any], field: str) -> None:
    resp = admin.call("POST", "/v1/subscriptions", {"tenant_id": "t", **body})
    assert resp.status_code == 422
    assert resp.json()["error"]["field"] == field
    raw = admin.http.post("/v1/subscriptions", content=b"{not json")
    assert raw.status_code == 422


def test_the_secret_is_returned_only_by_create_and_rotate(admin: Api) -> None:
    created = admin.create(tenant_id="sec", url=URL, event_types=["*"])
    secret = created["signing_secret"]
    assert secret.startswith("whsec_")
    for resp in (
        admin.call("GET", f"/v1/subscriptions/{created['id']}"),
        admin.call("GET", "/v1/subscriptions", tenant_id="sec"),
        admin.call("PATCH", f"/v1/subscriptions/{created['id']}", {"description": "x"}),
    ):
        assert secret not in resp.text
        assert "signing_secret" not in resp.text
    rotated = admin.call(
        "POST", f"/v1/subscriptions/{created['id']}/rotate-secret", {"grace": "1h"}
    ).json()
    assert rotated["signing_secret"] not in (secret, None)
    assert rotated["secret"]["previous_valid_until"] is not None


def test_asymmetric_subscriptions_publish_their_public_key(admin: Api) -> None:
    from streams.signing.standard import generate_asymmetric_secret, public_key

    secret = generate_asymmetric_secret()
    created = admin.create(tenant_id="v1a", url=URL, event_types=["*"], secret=secret)
    assert created["public_keys"] == [public_key(secret)]
    assert secret not in str(admin.call("GET", f"/v1/subscriptions/{created['id']}").json())


def test_every_route_is_in_the_openapi_document(admin: Api) -> None:
    doc = admin.call("GET", "/openapi.json").json()
    paths = doc["paths"]
    for path in (
        "/v1/subscriptions",
        "/v1/subscriptions/{id}",
        "/v1/subscriptions/{id}/rotate-secret",
        "/v1/subscriptions/{id}/enable",
        "/v1/subscriptions/{id}/disable",
        "/v1/subscriptions/{id}/test",
        "/v1/tokens",
        "/healthz",
    ):
        assert path in paths
