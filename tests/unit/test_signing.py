"""The signing profiles, checked against fixed vectors.

No expected value below was produced by the code under test. Each one comes
from a published example (cited where it is used) or was computed in a shell
with openssl, with the command written next to it.
"""

from __future__ import annotations

import base64
import re

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from streams.errors import SigningError
from streams.signing import (
    DEFAULT_PROFILE,
    PROFILES,
    SignatureInput,
    generate_secret,
    get_profile,
    validate_secret,
)
from streams.signing.standard import generate_asymmetric_secret, public_key

# --- The Standard Webhooks test vector -------------------------------------
# From the reference libraries of github.com/standard-webhooks/standard-webhooks
# (libraries/go/webhook_symmetric_test.go, TestSymmetricWebhookSign, and
# libraries/go/webhook_asymmetric_test.go, TestAsymmetricWebhookSign; the other
# language libraries test the same values). Re-checked with openssl:
#   KEY=$(printf %s MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw | base64 -d | xxd -p | tr -d '\n')
#   printf %s 'msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330.{"test": 2432232314}' \
#     | openssl dgst -sha256 -mac HMAC -macopt hexkey:$KEY -binary | base64
# and, for v1a, `openssl pkeyutl -sign -rawin` with the seed wrapped in a
# PKCS#8 DER (prefix 302e020100300506032b657004220420).
SPEC_MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_V1 = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
SPEC_WHSK = "whsk_VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk="
SPEC_V1A = (
    "v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mkATuDe6KYYUuxqtaiHeYGb7KaaBRdM5WqyeFiL8Ag=="
)
# openssl pkey -in key.pem -pubout -outform DER | tail -c 32 | base64
SPEC_WHPK = "whpk_ZlN4eg7dSSqi0moX9hQUk3orrOouK3QVQSlJa248c/g="

# A second whsec_ secret for rotation: base64 of "second-secret-for-rotation-tests".
# Same openssl command as above with this key:
ROTATED_WHSEC = "whsec_c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24tdGVzdHM="
ROTATED_V1 = "v1,CdhywrEFSVz1g/t8eymAqURvuhQarkOs584CNY0OjOs="

# --- Prowlo: the inputs of the curl recipe in Prowlo's webhook reference ----
#   printf '%s' '1714417953.{"type":"crawl.run.completed","id":"evt_test"}' \
#     | openssl dgst -sha256 -hmac 'prowlo-test-secret'
PROWLO_TIMESTAMP = 1714417953
PROWLO_BODY = b'{"type":"crawl.run.completed","id":"evt_test"}'
PROWLO_SECRET = "prowlo-test-secret"
PROWLO_V1 = "v1=84e9fb0e9ebb7e0263c2154333fb96ce9f5be42698e68827a2e05e07290d586f"

# --- Prospektr ---------------------------------------------------------------
#   printf '%s' '{"type":"prospect.added","prospect":{"id":"p_1"}}' \
#     | openssl dgst -sha256 -hmac 'prospektr-test-secret'
PROSPEKTR_BODY = b'{"type":"prospect.added","prospect":{"id":"p_1"}}'
PROSPEKTR_SECRET = "prospektr-test-secret"
PROSPEKTR_SIG = "sha256=7c4ddcfe2f364d3676287faa12cc9972d1508b56812c942e7b2143e59c5bcfb3"

# --- Stripe --------------------------------------------------------------------
#   printf '%s' '1492774577.{"id":"evt_1","object":"event"}' | openssl dgst -sha256 -hmac S
# for S = whsec_stripe_current, then S = whsec_stripe_previous.
STRIPE_TIMESTAMP = 1492774577
STRIPE_BODY = b'{"id":"evt_1","object":"event"}'
STRIPE_CURRENT = "whsec_stripe_current"
STRIPE_PREVIOUS = "whsec_stripe_previous"
STRIPE_V1_CURRENT = "03350b915e2343578d48dd36d000cdaec5c23d4ec2ab7538e77ce7b2d46b1c6c"
STRIPE_V1_PREVIOUS = "c612f2fb0bbdc3ca340ffae4b08f891078c0c2c956e308feeba7acf5048698c4"

# --- GitHub: the example in GitHub's "Validating webhook deliveries" docs -----
#   printf '%s' 'Hello, World!' | openssl dgst -sha256 -hmac "It's a Secret to Everybody"
GITHUB_BODY = b"Hello, World!"
GITHUB_SECRET = "It's a Secret to Everybody"
GITHUB_SIG = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

A_TEXT_SECRET = "another-text-secret-1234"


def inp(
    *secrets: str,
    msg_id: str = SPEC_MSG_ID,
    timestamp: int = SPEC_TIMESTAMP,
    body: bytes = SPEC_BODY,
    event_type: str = "crawl.run.completed",
) -> SignatureInput:
    return SignatureInput(
        msg_id=msg_id, timestamp=timestamp, body=body, event_type=event_type, secrets=secrets
    )


# --- The registry ----------------------------------------------------------------


def test_the_registry_holds_the_six_profiles_under_their_own_names() -> None:
    assert set(PROFILES) == {"standard", "prowlo", "prospektr", "stripe", "github", "none"}
    for name, profile in PROFILES.items():
        assert profile.name == name
    assert DEFAULT_PROFILE == "standard"


def test_get_profile_returns_the_registered_profile() -> None:
    assert get_profile("stripe") is PROFILES["stripe"]


def test_an_unknown_profile_is_refused_with_the_list_of_valid_ones() -> None:
    with pytest.raises(SigningError) as err:
        get_profile("svix")
    message = str(err.value)
    assert "'svix'" in message
    for name in PROFILES:
        assert name in message


def test_secret_functions_refuse_an_unknown_profile() -> None:
    with pytest.raises(SigningError, match="valid profiles"):
        generate_secret("nope")
    with pytest.raises(SigningError, match="valid profiles"):
        validate_secret("nope", "x" * 30)


SIGNING = sorted(set(PROFILES) - {"none"})


@pytest.mark.parametrize("name", SIGNING)
def test_every_header_a_profile_sends_is_reserved(name: str) -> None:
    profile = PROFILES[name]
    secret = SPEC_WHSEC if name == "standard" else A_TEXT_SECRET
    sent = profile.headers(inp(secret))
    assert sent
    assert {h.lower() for h in sent} <= profile.reserved_headers
    assert all(h == h.lower() for h in profile.reserved_headers)


def test_only_standard_and_stripe_can_carry_several_signatures() -> None:
    assert {n for n, p in PROFILES.items() if p.multiple_signatures} == {"standard", "stripe"}


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_signing_is_pure_the_same_input_gives_the_same_headers(name: str) -> None:
    secret = SPEC_WHSK if name == "standard" else A_TEXT_SECRET
    assert PROFILES[name].headers(inp(secret)) == PROFILES[name].headers(inp(secret))


def test_the_repr_of_an_input_never_shows_its_secrets() -> None:
    assert SPEC_WHSEC not in repr(inp(SPEC_WHSEC))


# --- standard ------------------------------------------------------------------


def test_standard_signature_matches_the_spec_vector() -> None:
    assert PROFILES["standard"].headers(inp(SPEC_WHSEC)) == {
        "webhook-id": SPEC_MSG_ID,
        "webhook-timestamp": "1614265330",
        "webhook-signature": SPEC_V1,
    }


def test_standard_asymmetric_signature_matches_the_spec_vector() -> None:
    headers = PROFILES["standard"].headers(inp(SPEC_WHSK))
    assert headers["webhook-signature"] == SPEC_V1A


def test_standard_accepts_the_64_byte_form_of_an_ed25519_key() -> None:
    seed = base64.b64decode(SPEC_WHSK.removeprefix("whsk_"))
    public = base64.b64decode(SPEC_WHPK.removeprefix("whpk_"))
    long_form = "whsk_" + base64.b64encode(seed + public).decode()
    assert PROFILES["standard"].headers(inp(long_form))["webhook-signature"] == SPEC_V1A


def test_standard_refuses_a_64_byte_key_whose_public_half_does_not_match() -> None:
    seed = base64.b64decode(SPEC_WHSK.removeprefix("whsk_"))
    corrupt = "whsk_" + base64.b64encode(seed + bytes(32)).decode()
    with pytest.raises(SigningError, match="public key"):
        validate_secret("standard", corrupt)


def test_public_key_of_the_spec_key_is_the_one_openssl_derives() -> None:
    assert public_key(SPEC_WHSK) == SPEC_WHPK


def test_public_key_refuses_a_symmetric_secret() -> None:
    with pytest.raises(SigningError, match="no public key") as err:
        public_key(SPEC_WHSEC)
    assert SPEC_WHSEC not in str(err.value)


def test_standard_signs_once_per_secret_during_rotation() -> None:
    headers = PROFILES["standard"].headers(inp(SPEC_WHSEC, ROTATED_WHSEC))
    assert headers["webhook-signature"] == f"{SPEC_V1} {ROTATED_V1}"


def test_standard_puts_the_current_secret_first() -> None:
    headers = PROFILES["standard"].headers(inp(ROTATED_WHSEC, SPEC_WHSEC))
    assert headers["webhook-signature"] == f"{ROTATED_V1} {SPEC_V1}"


def test_standard_mixes_symmetric_and_asymmetric_secrets() -> None:
    headers = PROFILES["standard"].headers(inp(SPEC_WHSK, SPEC_WHSEC))
    assert headers["webhook-signature"] == f"{SPEC_V1A} {SPEC_V1}"


def test_standard_signs_once_with_a_secret_listed_twice() -> None:
    headers = PROFILES["standard"].headers(inp(SPEC_WHSEC, SPEC_WHSEC))
    assert headers["webhook-signature"] == SPEC_V1


def test_standard_refuses_to_sign_without_a_secret() -> None:
    with pytest.raises(SigningError, match="no signing secret"):
        PROFILES["standard"].headers(inp())


def test_standard_refuses_a_message_id_containing_a_dot() -> None:
    with pytest.raises(SigningError, match=r"must not contain '\.'"):
        PROFILES["standard"].headers(inp(SPEC_WHSEC, msg_id="msg.1"))


@pytest.mark.parametrize("msg_id", ["", "msg\r\nx-injected: 1", "msg_é"])
def test_standard_refuses_a_message_id_that_cannot_be_a_header(msg_id: str) -> None:
    with pytest.raises(SigningError, match="message id"):
        PROFILES["standard"].headers(inp(SPEC_WHSEC, msg_id=msg_id))


def test_a_negative_timestamp_is_refused() -> None:
    with pytest.raises(SigningError, match="timestamp"):
        PROFILES["standard"].headers(inp(SPEC_WHSEC, timestamp=-1))


# Bad standard secrets: each case names a fragment the message must contain.
_SHORT = "whsec_" + base64.b64encode(b"sixteen-byte-key").decode()
_LONG = "whsec_" + base64.b64encode(b"k" * 65).decode()
BAD_STANDARD_SECRETS = [
    pytest.param("", "empty", id="empty"),
    pytest.param("whsec_not*base64!", "not valid base64", id="whsec-bad-alphabet"),
    pytest.param("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS", "not valid base64", id="whsec-bad-pad"),
    pytest.param("whsec_MfKQ9r8GKYqr TwjUPD8ILPZIo2LaLaSw", "not valid base64", id="whsec-space"),
    pytest.param(_SHORT, "too short", id="whsec-too-short"),
    pytest.param(_LONG, "too long", id="whsec-too-long"),
    pytest.param("whsec_", "too short", id="whsec-prefix-only"),
    pytest.param("whsk_c2hvcnQ=", "32-byte", id="whsk-wrong-length"),
    pytest.param("whsk_%%%", "not valid base64", id="whsk-bad-base64"),
    pytest.param(SPEC_WHPK, "public key", id="whpk-instead-of-whsk"),
    pytest.param("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "must start with", id="no-prefix"),
]


@pytest.mark.parametrize(("secret", "fragment"), BAD_STANDARD_SECRETS)
def test_a_bad_standard_secret_is_refused_without_echoing_it(secret: str, fragment: str) -> None:
    for attempt in (
        lambda: validate_secret("standard", secret),
        lambda: PROFILES["standard"].headers(inp(secret)),
    ):
        with pytest.raises(SigningError) as err:
            attempt()
        message = str(err.value)
        assert fragment in message
        key_part = re.sub(r"^wh(sec|sk|pk)_", "", secret)
        if key_part:  # (a bare prefix is named by the messages themselves)
            assert secret not in message
            assert key_part not in message
        # No chained exception (e.g. a base64 decoder's) rides along in tracebacks.
        assert err.value.__cause__ is None
        assert err.value.__context__ is None or err.value.__suppress_context__


def test_a_bad_previous_secret_also_stops_standard_signing() -> None:
    with pytest.raises(SigningError, match="too short"):
        PROFILES["standard"].headers(inp(SPEC_WHSEC, _SHORT))


def test_the_spec_secrets_are_valid() -> None:
    validate_secret("standard", SPEC_WHSEC)
    validate_secret("standard", SPEC_WHSK)


@pytest.mark.parametrize("nbytes", [24, 32, 64])
def test_generate_secret_for_standard_is_whsec_and_base64_of_nbytes(nbytes: int) -> None:
    secret = generate_secret("standard", nbytes)
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == nbytes
    validate_secret("standard", secret)


def test_generate_secret_defaults_to_32_bytes() -> None:
    secret = generate_secret("standard")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32


def test_generated_secrets_differ() -> None:
    assert generate_secret("standard") != generate_secret("standard")


@pytest.mark.parametrize("name", SIGNING)
@pytest.mark.parametrize("nbytes", [0, 23, 65])
def test_generate_secret_refuses_a_size_outside_24_to_64(name: str, nbytes: int) -> None:
    with pytest.raises(SigningError, match="between 24 and 64"):
        generate_secret(name, nbytes)


def test_the_none_profile_sends_no_header_and_has_no_secret() -> None:
    profile = PROFILES["none"]
    assert profile.headers(inp(A_TEXT_SECRET)) == {}
    assert profile.headers(inp()) == {}
    assert profile.reserved_headers == frozenset()
    with pytest.raises(SigningError, match="takes no secret"):
        validate_secret("none", A_TEXT_SECRET)
    with pytest.raises(SigningError, match="has no secret"):
        generate_secret("none")


def test_an_asymmetric_secret_signs_what_its_public_key_verifies() -> None:
    secret = generate_asymmetric_secret()
    assert secret.startswith("whsk_")
    assert len(base64.b64decode(secret.removeprefix("whsk_"), validate=True)) == 32
    validate_secret("standard", secret)
    signature = PROFILES["standard"].headers(inp(secret))["webhook-signature"]
    assert signature.startswith("v1a,")
    public = public_key(secret)
    assert public.startswith("whpk_")
    verifier = Ed25519PublicKey.from_public_bytes(base64.b64decode(public.removeprefix("whpk_")))
    verifier.verify(  # raises InvalidSignature on a mismatch
        base64.b64decode(signature.removeprefix("v1a,")),
        f"{SPEC_MSG_ID}.{SPEC_TIMESTAMP}.".encode() + SPEC_BODY,
    )


# --- prowlo ----------------------------------------------------------------------


def test_prowlo_headers_match_the_openssl_vector() -> None:
    headers = PROFILES["prowlo"].headers(
        inp(PROWLO_SECRET, timestamp=PROWLO_TIMESTAMP, body=PROWLO_BODY)
    )
    assert headers == {
        "Prowlo-Timestamp": "1714417953",
        "Prowlo-Signature": PROWLO_V1,
        "X-Prowlo-Signature": PROWLO_V1,
        "Prowlo-Event": "crawl.run.completed",
    }


def test_prowlo_signs_with_the_current_secret_only() -> None:
    signed = PROFILES["prowlo"].headers(
        inp(PROWLO_SECRET, A_TEXT_SECRET, timestamp=PROWLO_TIMESTAMP, body=PROWLO_BODY)
    )
    assert signed["Prowlo-Signature"] == PROWLO_V1
    assert signed["X-Prowlo-Signature"] == PROWLO_V1


def test_prowlo_refuses_to_sign_without_a_secret() -> None:
    with pytest.raises(SigningError, match="no signing secret"):
        PROFILES["prowlo"].headers(inp())


def test_prowlo_refuses_an_event_type_that_would_break_the_header() -> None:
    with pytest.raises(SigningError, match="event type"):
        PROFILES["prowlo"].headers(inp(PROWLO_SECRET, event_type="a\r\nx-evil: 1"))


# --- prospektr -------------------------------------------------------------------


def test_prospektr_signature_matches_the_openssl_vector() -> None:
    headers = PROFILES["prospektr"].headers(inp(PROSPEKTR_SECRET, body=PROSPEKTR_BODY))
    assert headers == {"X-Prospektr-Signature": PROSPEKTR_SIG}


def test_prospektr_signs_with_the_current_secret_only() -> None:
    headers = PROFILES["prospektr"].headers(
        inp(PROSPEKTR_SECRET, A_TEXT_SECRET, body=PROSPEKTR_BODY)
    )
    assert headers == {"X-Prospektr-Signature": PROSPEKTR_SIG}


def test_prospektr_without_a_secret_sends_no_signature_header() -> None:
    assert PROFILES["prospektr"].headers(inp(body=PROSPEKTR_BODY)) == {}


# --- stripe ----------------------------------------------------------------------


def test_stripe_signature_matches_the_openssl_vector() -> None:
    headers = PROFILES["stripe"].headers(
        inp(STRIPE_CURRENT, timestamp=STRIPE_TIMESTAMP, body=STRIPE_BODY)
    )
    assert headers == {"Stripe-Signature": f"t=1492774577,v1={STRIPE_V1_CURRENT}"}


def test_stripe_carries_one_v1_per_secret_during_rotation() -> None:
    headers = PROFILES["stripe"].headers(
        inp(STRIPE_CURRENT, STRIPE_PREVIOUS, timestamp=STRIPE_TIMESTAMP, body=STRIPE_BODY)
    )
    assert headers == {
        "Stripe-Signature": f"t=1492774577,v1={STRIPE_V1_CURRENT},v1={STRIPE_V1_PREVIOUS}"
    }


def test_stripe_refuses_to_sign_without_a_secret() -> None:
    with pytest.raises(SigningError, match="no signing secret"):
        PROFILES["stripe"].headers(inp())


# --- github ----------------------------------------------------------------------


def test_github_signature_matches_githubs_documented_example() -> None:
    headers = PROFILES["github"].headers(
        inp(GITHUB_SECRET, msg_id="d-1", body=GITHUB_BODY, event_type="user.created")
    )
    assert headers == {
        "X-Hub-Signature-256": GITHUB_SIG,
        "X-GitHub-Delivery": "d-1",
        "X-GitHub-Event": "user.created",
    }


def test_github_signs_with_the_current_secret_only() -> None:
    headers = PROFILES["github"].headers(inp(GITHUB_SECRET, A_TEXT_SECRET, body=GITHUB_BODY))
    assert headers["X-Hub-Signature-256"] == GITHUB_SIG


def test_github_refuses_to_sign_without_a_secret() -> None:
    with pytest.raises(SigningError, match="no signing secret"):
        PROFILES["github"].headers(inp())


# --- secrets of the text-keyed profiles ----------------------------------------------

TEXT_PROFILES = ["prowlo", "prospektr", "stripe", "github"]
BAD_TEXT_SECRETS = [
    pytest.param("", "empty", id="empty"),
    pytest.param("short-secret", "too short", id="too-short"),
    pytest.param(" padded-secret-with-space", "whitespace", id="leading-space"),
    pytest.param("a-secret-with-newline-at-end\n", "whitespace", id="trailing-newline"),
    pytest.param("a-secret\x00with-a-nul-inside", "control characters", id="control-char"),
]


@pytest.mark.parametrize("name", TEXT_PROFILES)
@pytest.mark.parametrize(("secret", "fragment"), BAD_TEXT_SECRETS)
def test_a_bad_text_secret_is_refused_without_echoing_it(
    name: str, secret: str, fragment: str
) -> None:
    for attempt in (
        lambda: validate_secret(name, secret),
        lambda: PROFILES[name].headers(inp(secret)),
    ):
        with pytest.raises(SigningError) as err:
            attempt()
        assert fragment in str(err.value)
        assert name in str(err.value)
        if secret:
            assert secret.strip() not in str(err.value)


@pytest.mark.parametrize("name", TEXT_PROFILES)
def test_generate_secret_for_text_profiles_is_a_url_safe_string(name: str) -> None:
    secret = generate_secret(name)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", secret)  # 32 bytes of token_urlsafe
    validate_secret(name, secret)
    assert generate_secret(name) != secret


def test_the_documented_example_secrets_are_valid() -> None:
    validate_secret("github", GITHUB_SECRET)
    validate_secret("stripe", STRIPE_CURRENT)
    validate_secret("prowlo", PROWLO_SECRET)
    validate_secret("prospektr", PROSPEKTR_SECRET)
