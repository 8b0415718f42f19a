"""The regex-only redaction deflect used before python-stdnum and phonenumbers, kept verbatim
as the baseline of `make bench` section ``redaction`` (not used by the product).

Redaction of personal data before anything is stored.

E-mail addresses, IBANs (mod-97 checked), payment card numbers (Luhn checked), phone
numbers and other long digit runs become typed placeholders: ``[EMAIL]``, ``[IBAN]``,
``[CARD]``, ``[PHONE]``, ``[NUMBER]``. Dates, times, prices, versions, short numbers and
error codes are left alone: they are what makes a query useful in a content-gap report.

The order matters: the most specific patterns run first, so a card number is never
reported as a phone number and an IBAN's digits are never left as a long number.
"""

from __future__ import annotations

import re

EMAIL = "[EMAIL]"
IP = "[IP]"
IBAN = "[IBAN]"
CARD = "[CARD]"
PHONE = "[PHONE]"
NUMBER = "[NUMBER]"

_EMAIL_RE = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
# two letters, two check digits, then 11-30 letters/digits, optionally in groups of four
_IBAN_RE = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{1,4}){3,8}\b", re.IGNORECASE)
# 13-19 digits, optionally grouped by single spaces or dashes
_CARD_RE = re.compile(r"(?<![\d.,])\d(?:[ -]?\d){12,18}(?![\d.,]?\d)")
# dates and times are protected from the phone and number patterns
_DATE_RE = re.compile(
    r"\b(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4})(?:[T ]\d{1,2}:\d{2}(?::\d{2})?)?\b"
)
# an optional +country code, then digit groups separated by spaces, dots, dashes or
# parentheses; 7 to 15 digits in all (checked below)
_IPV4_RE = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.]?\d)")
_PHONE_RE = re.compile(r"(?<![\w.#/-])(?:\+|00)?\(?\d{1,4}\)?(?:[ .-]?\(?\d{1,5}\)?){1,6}(?![\w])")
_LONG_DIGITS_RE = re.compile(r"(?<![\d.,])\d{6,}(?![\d.,]?\d)")


def luhn_valid(digits: str) -> bool:
    """True when ``digits`` (only digits) pass the Luhn checksum of payment cards."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_valid(text: str) -> bool:
    """True when ``text`` (spaces allowed) is an IBAN whose mod-97 check holds."""
    s = text.replace(" ", "").upper()
    if not 15 <= len(s) <= 34 or not s[:2].isalpha() or not s[2:4].isdigit():
        return False
    moved = s[4:] + s[:4]
    try:
        number = int("".join(str(int(c, 36)) for c in moved))
    except ValueError:
        return False
    return number % 97 == 1


def _cards(m: re.Match) -> str:
    digits = re.sub(r"\D", "", m.group(0))
    return CARD if 13 <= len(digits) <= 19 and luhn_valid(digits) else m.group(0)


def _ibans(m: re.Match) -> str:
    # the pattern is greedy ("DE89 3704 ... 00 refund" takes "refund" too): drop trailing
    # space-separated groups until the rest is a valid IBAN, keeping what was dropped
    s = m.group(0)
    parts = s.split(" ")
    for end in range(len(parts), 0, -1):
        head = " ".join(parts[:end])
        if iban_valid(head):
            rest = " ".join(parts[end:])
            return IBAN + (" " + rest if rest else "")
    return s


def _phones(m: re.Match) -> str:
    s = m.group(0)
    digits = re.sub(r"\D", "", s)
    international = s.startswith(("+", "00"))
    grouped = bool(re.search(r"[ .()-]", s.strip()))
    # a bare run of digits is a phone number only when it starts with + / 00; grouped
    # digits need at least 7 digits (local numbers) and at most 15 (E.164)
    if not 7 <= len(digits) <= 15 or not (international or grouped):
        return s
    # "3 2 1" style lists of small numbers are not phone numbers: need a group of 3+ digits
    if not re.search(r"\d{3,}", s):
        return s
    return PHONE


def redact(text: str) -> str:
    """``text`` with e-mails, IBANs, card numbers, phone numbers and long digit runs replaced."""
    if not text:
        return text
    out = _EMAIL_RE.sub(EMAIL, text)
    out = _IBAN_RE.sub(_ibans, out)
    out = _CARD_RE.sub(_cards, out)
    # protect dates and times from the digit patterns
    protected: list[str] = []

    def _keep(m: re.Match) -> str:
        protected.append(m.group(0))
        return f"\x00{len(protected) - 1}\x00"

    out = _IPV4_RE.sub(IP, out)
    out = _DATE_RE.sub(_keep, out)
    out = _PHONE_RE.sub(_phones, out)
    out = _LONG_DIGITS_RE.sub(NUMBER, out)
    if protected:
        out = re.sub(r"\x00(\d+)\x00", lambda m: protected[int(m.group(1))], out)
    return out
