"""Redaction: what must go, and what must stay (it is what makes a content-gap report useful)."""

from __future__ import annotations

import pytest

from deflect.redact import iban_valid, luhn_valid, redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("my email is jane.doe+shop@example.co.uk, please help", "my email is [EMAIL], please help"),
        ("Contact: J.Smith@Mail-Server.com.", "Contact: [EMAIL]."),
        ("card 4111 1111 1111 1111 was charged twice", "card [CARD] was charged twice"),
        ("charged on 5500-0000-0000-0004 yesterday", "charged on [CARD] yesterday"),
        ("amex 378282246310005", "amex [CARD]"),
        ("refund to DE89 3704 0044 0532 0130 00 please", "refund to [IBAN] please"),
        ("iban GB82WEST12345698765432", "iban [IBAN]"),
        ("lowercase de89370400440532013000 works too", "lowercase [IBAN] works too"),
        ("bank FR14 2004 1010 0505 0001 3M02 606.", "bank [IBAN]."),
        ("call me at +1 (415) 555-0132 or 020 7946 0958", "call me at [PHONE] or [PHONE]"),
        ("phone 0044 20 7946 0958", "phone [PHONE]"),
        ("ring 555-0132-88 after 5", "ring [PHONE] after 5"),
        ("order #123456789 never arrived", "order #[NUMBER] never arrived"),
        ("my account number is 12345678", "my account number is [NUMBER]"),
        ("logins from 192.168.1.20 are blocked", "logins from [IP] are blocked"),
    ],
)
def test_redacts(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "on 2024-03-15 at 10:30 I was charged $19.99 twice",
        "date 15/03/2024 and 3.5 hours",
        "app version 2.13.0 crashes with error 404 and E1234",
        "I have 3 users and 25 bookings in 2023",
        "invoice INV-2024-0012 is wrong",
        "price 1,299.00 EUR per year",
        "plan with 10000 SMS a month",  # 5 digits: a quantity, not an identifier
        "card 4111 1111 1111 1112 is not a valid card number",  # fails Luhn
        "reference DE00 1234 5678 9012 3456 78",  # fails mod 97
        "sessions at 9:00, 10:30 and 14:15",
        "between 1 2 3 and 4",
    ],
)
def test_keeps(text):
    assert redact(text) == text


def test_checksums():
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert iban_valid("DE89 3704 0044 0532 0130 00") and not iban_valid("DE00 3704 0044 0532 0130 00")


def test_empty_and_plain_text_pass_through():
    assert redact("") == ""
    assert redact("how do I reset my password?") == "how do I reset my password?"
