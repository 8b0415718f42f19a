"""Redaction of personal data before anything is stored.

E-mail addresses (internationalised ones too), IP addresses (v4 and v6), IBANs, payment card
numbers, national identity numbers and phone numbers become typed placeholders: ``[EMAIL]``,
``[IP]``, ``[IBAN]``, ``[CARD]``, ``[ID]``, ``[PHONE]``; a long run of digits after a word
that says it is an account or an identity number becomes ``[NUMBER]``. Dates, times,
amounts, versions, order numbers and error codes are left alone: they are what makes a
query useful in a content-gap report.

How each is found: a pattern finds candidates (every quantifier bounded, no pattern nested
in a repeated group: the work is linear in the text's length, whatever the text), and a
maintained validator decides:

- phone numbers: Google's libphonenumber (``phonenumbers``), in international form (``+``
  or ``00``) for any country, in national form for the countries deflect's languages are
  spoken in and their neighbours (:data:`PHONE_REGIONS`);
- IBANs, cards and national identifiers: ``python-stdnum`` (IBAN mod-97, Luhn, China's
  resident identity number, Indonesia's NIK and NPWP, Italy's codice fiscale, the US SSN;
  the UK's National Insurance number and Taiwan's national ID, which it lacks, by their
  published rules). A number with the right shape
  but a wrong check digit is redacted all the same: a customer's typo is still their card.

The order matters: the most specific kinds run first, so a card number is never reported as
a phone number and an IBAN's digits are never left behind. Placeholders contain no digit, so
a later pass cannot match inside one.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

import phonenumbers
from stdnum import iban as _iban
from stdnum import luhn
from stdnum.cn import ric as _cn_ric
from stdnum.exceptions import InvalidChecksum, ValidationError
from stdnum.id import nik as _id_nik
from stdnum.id import npwp as _id_npwp
from stdnum.it import codicefiscale as _it_cf
from stdnum.us import ssn as _us_ssn

EMAIL = "[EMAIL]"
IP = "[IP]"
IBAN = "[IBAN]"
CARD = "[CARD]"
ID = "[ID]"
PHONE = "[PHONE]"
NUMBER = "[NUMBER]"

#: national-form phone numbers are read as numbers of these countries, in this order
PHONE_REGIONS = ("ID", "TW", "CN", "HK", "SG", "MY", "GB", "FR", "DE", "NL", "ES", "IT", "AU", "IN", "US")

# letters that may stand beside a number or an address without being part of it: Latin,
# digits; CJK text around a number (没有空格) is not part of it
_AN = "A-Za-z0-9"
_LOCAL = r"A-Za-z0-9\u00C0-\u024F\u0370-\u03FF\u0400-\u04FF._%+-"
_LABEL = r"A-Za-z0-9\u00C0-\u024F\u0370-\u03FF\u0400-\u04FF-"
_TLD = r"A-Za-z\u00C0-\u024F\u0370-\u03FF\u0400-\u04FF"
_EMAIL_RE = re.compile(
    rf"(?<![{_LOCAL}])[{_LOCAL}]{{1,64}}@(?:[{_LABEL}]{{1,63}}\.){{1,8}}[{_TLD}]{{2,63}}(?![{_LABEL}])"
)
_IPV4_RE = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.]?\d)")
_IPV6_RE = re.compile(r"(?<![0-9A-Za-z:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Za-z:])")
_IBAN_RE = re.compile(rf"(?<![{_AN}])[A-Za-z]{{2}}\d{{2}}(?:[ -]?[A-Za-z0-9]){{11,30}}(?![{_AN}])")
# identity numbers with a shape of their own
_CN_RIC_RE = re.compile(rf"(?<![{_AN}])\d{{6}}(?:19|20)\d{{2}}[01]\d[0-3]\d\d{{3}}[\dXx](?![{_AN}])")
_ID_NIK_RE = re.compile(rf"(?<![{_AN}])\d{{16}}(?![{_AN}])")
# NPWP as it is written (99.999.999.9-999.999); bare, its 15 digits are read as a card first
_ID_NPWP_RE = re.compile(rf"(?<![{_AN}])\d{{2}}\.\d{{3}}\.\d{{3}}\.\d-\d{{3}}\.\d{{3}}(?![{_AN}])")
_GB_NINO_RE = re.compile(rf"(?<![{_AN}])[A-Za-z]{{2}} ?\d{{2}} ?\d{{2}} ?\d{{2}} ?[A-Da-d](?![{_AN}])")
_IT_CF_RE = re.compile(rf"(?<![{_AN}])[A-Za-z]{{6}}\d{{2}}[A-Za-z]\d{{2}}[A-Za-z]\d{{3}}[A-Za-z](?![{_AN}])")
_US_SSN_RE = re.compile(rf"(?<![{_AN}-])\d{{3}}-\d{{2}}-\d{{4}}(?![{_AN}-])")
_TW_ID_RE = re.compile(rf"(?<![{_AN}])[A-Za-z][12]\d{{8}}(?![{_AN}])")
# 13 to 19 digits, in groups separated by up to two spaces, dots or dashes
_CARD_RE = re.compile(rf"(?<![{_AN}.,])\d(?:[ .-]{{0,2}}\d){{12,18}}(?![{_AN}]|[.,]\d)")
# what may be a phone number: an optional + or 00, digits in groups separated by spaces,
# dots, dashes, slashes or parentheses
_PHONE_RE = re.compile(rf"(?<![{_AN}+.,/#-])(?:\+|00)?\(?\d[\d ().\/-]{{5,40}}\d\)?(?![{_AN}]|[.,]\d)")
_DATE_RE = re.compile(r"\d{1,4}([./-])\d{1,2}\1\d{2,4}")
#: phone-number checks per text; past them, what looks like a phone number (7 to 15 digits in
#: groups) is redacted unchecked, so that no text costs more than about 30 ms of checks
PHONE_CHECKS = 2000
# a number that a word before it says is an account or an identity number
_TOLD_RE = re.compile(
    r"(?i)(?:account|acct|a/c|rekening|no\.? rek|ktp|passport|paspor|身份证|身分證|護照|护照|账号|帳號|卡号|卡號)"
    r"[^0-9\n]{0,12}(\d(?:[ -]?\d){5,24})(?!\d)"
)


def luhn_valid(digits: str) -> bool:
    """True when ``digits`` (only digits) pass the Luhn checksum of payment cards."""
    return luhn.is_valid(digits)


def iban_valid(text: str) -> bool:
    """True when ``text`` (spaces and dashes allowed) is an IBAN whose mod-97 check holds."""
    return _iban.is_valid(text.replace("-", ""))


def _shaped(validate: Callable[[str], object], value: str) -> bool:
    """True when ``validate`` accepts ``value`` or refuses only its check digit."""
    try:
        validate(value)
    except InvalidChecksum:
        return True
    except (ValidationError, ValueError, KeyError, IndexError):
        return False
    return True


def _iban_shaped(compact: str) -> bool:
    """An IBAN, or one but for its check digits (the country's length and structure hold)."""
    if len(compact) < 15 or not compact[:2].isalpha():
        return False
    try:
        return _iban.is_valid(compact) or _iban.is_valid(compact[:2] + _iban.calc_check_digits(compact) + compact[4:])
    except (ValidationError, ValueError, KeyError):
        return False


#: IBAN checks per text; past them the shape decides (two letters, two digits, 11 to 30 more)
IBAN_CHECKS = 500


def _iban_head(s: str, budget: list[int]) -> int:
    """The length of the longest head of ``s`` that is an IBAN (0: none). The pattern is
    greedy ("DE89 3704 ... 00 refund" takes a word too); the rest is scanned again."""
    for end in range(len(s), 14, -1):
        if s[end - 1] in " -" or (end < len(s) and s[end].isalnum() and s[end - 1].isalnum()):
            continue
        compact = s[:end].replace(" ", "").replace("-", "").upper()
        if budget[0] <= 0:
            return end if 15 <= len(compact) <= 34 else 0
        budget[0] -= 1
        if _iban_shaped(compact):
            return end
    return 0


def _ibans(text: str) -> str:
    out, pos, budget = [], 0, [IBAN_CHECKS]
    while m := _IBAN_RE.search(text, pos):
        n = _iban_head(m.group(0), budget)
        if n:
            out += [text[pos : m.start()], IBAN]
            pos = m.start() + n
        else:
            out.append(text[pos : m.start() + 1])
            pos = m.start() + 1
    out.append(text[pos:])
    return "".join(out)


def _card_sub(m: re.Match) -> str:
    s = m.group(0)
    digits = re.sub(r"\D", "", s)
    groups = [len(g) for g in re.split(r"[ .-]+", s)]
    four = len(groups) >= 3 and all(n == 4 for n in groups[:-1]) and 1 <= groups[-1] <= 4  # 4-4-4-4(-3)
    amex = groups == [4, 6, 5]
    if luhn.is_valid(digits) or four or amex:
        return CARD
    return s


def _gb_nino_valid(s: str) -> bool:
    """The UK's National Insurance number (HMRC's rules for its two letters; python-stdnum
    has no module for it)."""
    t = s.replace(" ", "").upper()
    first, second = t[0], t[1]
    if first in "DFIQUV" or second in "DFIQUVO" or t[:2] in ("BG", "GB", "NK", "KN", "TN", "NT", "ZZ"):
        return False
    return t[-1] in "ABCD"


def _tw_id_valid(s: str) -> bool:
    """Taiwan's national identification number (letter, 1 or 2, eight digits, check digit)."""
    code = "ABCDEFGHJKLMNPQRSTUVXYWZIO".find(s[0].upper()) + 10
    n = [code // 10, code % 10] + [int(c) for c in s[1:]]
    weights = [1, 9, 8, 7, 6, 5, 4, 3, 2, 1, 1]
    return sum(a * b for a, b in zip(n, weights, strict=True)) % 10 == 0


def _id_sub(validate: Callable[[str], object], *, strict: bool = False) -> Callable[[re.Match], str]:
    def sub(m: re.Match) -> str:
        s = m.group(0)
        if strict:
            try:
                validate(s)
            except (ValidationError, ValueError):
                return s
            return ID
        return ID if _shaped(validate, s) else s

    return sub


def _phone_regions(digits: str, international: bool) -> tuple[str | None, ...]:
    if international:
        return (None,)
    if digits.startswith("0"):  # a trunk prefix: most countries' national form
        return PHONE_REGIONS
    if len(digits) == 11 and digits.startswith("1"):  # a mobile in China
        return ("CN",)
    if len(digits) == 10 and digits[0] in "23456789":  # North America
        return ("US",)
    if len(digits) == 8 and digits[0] in "235689":  # Hong Kong, Singapore
        return ("HK", "SG")
    return ()


class _Phones:
    """The phone pass of one text, with its budget of checks (:data:`PHONE_CHECKS`)."""

    def __init__(self) -> None:
        self.left = PHONE_CHECKS

    def valid(self, s: str) -> bool:
        t = s.strip()
        international = t.startswith(("+", "00"))
        if international and t.startswith("00"):
            t = "+" + t[2:]
        digits = re.sub(r"\D", "", t)
        if not 7 <= len(digits) <= 15:
            return False
        if "." in t and (t.count(".") < 3 or len(digits) < 9):  # 1.2.3 is a version, 1.500.000 an amount
            return False
        if _DATE_RE.fullmatch(t):  # 23/11/2026, 2026-11-23
            return False
        regions = _phone_regions(digits, international)
        if self.left <= 0:  # out of checks: the shape decides
            return bool(regions) and bool(re.search(r"[ ./()-]", t) or international)
        for region in regions:
            self.left -= 1
            try:
                number = phonenumbers.parse(t, region)
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_valid_number(number):
                return True
        return False

    def __call__(self, m: re.Match) -> str:
        s = m.group(0)
        if self.valid(s):
            return PHONE
        # several numbers in a row ("0612345678 0698765432"): each shortest run of groups that is one
        tokens = s.split(" ")
        if len(tokens) < 2:
            return s
        out, i = [], 0
        while i < len(tokens):
            if not tokens[i][-1:].isdigit() and not tokens[i].startswith(("(", "+")):
                out.append(tokens[i])  # "/" or "or": not where a number starts
                i += 1
                continue
            for j in range(i + 1, min(len(tokens), i + 8) + 1):
                if self.valid(" ".join(tokens[i:j])):
                    out.append(PHONE)
                    i = j
                    break
            else:
                out.append(tokens[i])
                i += 1
        return " ".join(out)


def _told_sub(m: re.Match) -> str:
    start, end = m.span(1)
    s = m.group(0)
    return s[: start - m.start()] + NUMBER + s[end - m.start() :]


def _ip_sub(m: re.Match) -> str:
    try:
        ipaddress.ip_address(m.group(0))
    except ValueError:
        return m.group(0)
    return IP


def _ipv6_sub(m: re.Match) -> str:
    s = m.group(0)
    if s.count(":") < 2 or not re.search(r"[0-9A-Fa-f]", s):
        return s
    try:
        ipaddress.IPv6Address(s)
    except ValueError:
        return s
    return IP


def _subst(pattern: re.Pattern, repl) -> Callable[[str], str]:
    return lambda text: pattern.sub(repl, text)


# each step: text in, text out
_STEPS: list[Callable[[str], str]] = [
    _subst(_EMAIL_RE, EMAIL),
    _subst(_IPV6_RE, _ipv6_sub),
    _subst(_IPV4_RE, _ip_sub),
    _ibans,
    _subst(_ID_NPWP_RE, _id_sub(_id_npwp.validate)),
    _subst(_CN_RIC_RE, _id_sub(_cn_ric.validate)),
    _subst(_ID_NIK_RE, _id_sub(_id_nik.validate, strict=True)),
    _subst(_IT_CF_RE, _id_sub(_it_cf.validate)),
    _subst(_GB_NINO_RE, lambda m: ID if _gb_nino_valid(m.group(0)) else m.group(0)),
    _subst(_TW_ID_RE, lambda m: ID if _tw_id_valid(m.group(0)) else m.group(0)),
    _subst(_US_SSN_RE, _id_sub(_us_ssn.validate, strict=True)),
    _subst(_CARD_RE, _card_sub),
    _subst(_TOLD_RE, _told_sub),
    lambda text: _PHONE_RE.sub(_Phones(), text),  # a budget of checks per text
]


def redact(text: str) -> str:
    """``text`` with e-mails, IP addresses, IBANs, card numbers, identity numbers, phone numbers
    and told account numbers replaced by placeholders (the module's docstring). Linear time
    in ``len(text)``."""
    if not text:
        return text
    for step in _STEPS:
        text = step(text)
    return text
