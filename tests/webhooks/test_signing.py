"""Standard Webhooks signatures: the spec's known answer, rotation, tampering, freshness."""

from __future__ import annotations

import pytest

from webhooks.signing import InvalidSignature, new_secret, sign, signature_header, verify

# The known-answer vector of the Standard Webhooks specification.
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TIMESTAMP = 1614265330
BODY = b'{"test": 2432232314}'
EXPECTED = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_known_answer_of_the_specification():
    assert sign(SECRET, MSG_ID, TIMESTAMP, BODY) == EXPECTED
    verify(SECRET, MSG_ID, str(TIMESTAMP), BODY, EXPECTED, now_s=TIMESTAMP + 10)


def test_new_secrets_are_random_and_well_formed():
    a, b = new_secret(), new_secret()
    assert a != b and a.startswith("whsec_") and len(a) == len("whsec_") + 32
    verify(a, "m", "100", b"{}", sign(a, "m", 100, b"{}"), now_s=100)


def test_during_rotation_both_secrets_sign_and_either_verifies():
    old, new = new_secret(), new_secret()
    header = signature_header([new, old], MSG_ID, TIMESTAMP, BODY)
    assert len(header.split()) == 2
    for secret in (old, new):
        verify(secret, MSG_ID, str(TIMESTAMP), BODY, header, now_s=TIMESTAMP)


@pytest.mark.parametrize(("msg_id", "timestamp", "body", "now", "reason"), [
    (MSG_ID, str(TIMESTAMP), b'{"test": 2432232315}', TIMESTAMP, "no signature matches"),
    ("msg_other", str(TIMESTAMP), BODY, TIMESTAMP, "no signature matches"),
    (MSG_ID, str(TIMESTAMP), BODY, TIMESTAMP + 301, "outside the tolerance"),
    (MSG_ID, str(TIMESTAMP), BODY, TIMESTAMP - 301, "outside the tolerance"),
    (MSG_ID, "soon", BODY, TIMESTAMP, "not an integer"),
])
def test_tampered_or_stale_deliveries_are_refused(msg_id, timestamp, body, now, reason):
    with pytest.raises(InvalidSignature, match=reason):
        verify(SECRET, msg_id, timestamp, body, EXPECTED, now_s=now)


def test_another_secret_does_not_verify():
    with pytest.raises(InvalidSignature):
        verify(new_secret(), MSG_ID, str(TIMESTAMP), BODY, EXPECTED, now_s=TIMESTAMP)


def test_a_secret_without_the_prefix_is_refused():
    with pytest.raises(ValueError, match="whsec_"):
        sign("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", MSG_ID, TIMESTAMP, BODY)
