"""Writes examples/mail/demo.mbox: the demo mailbox (Tidewell's support address), built from
the demo queries written for this project, in English, Traditional and Simplified Chinese and
Indonesian: first messages and replies with quoted history, signatures, HTML-only mail, and
the mail nothing should answer (an auto-responder, a mailing list, a no-reply notification, a
message with no text), and three customers writing again on their thread. Each customer's
first message names the article that answers it in
``X-Demo-Article``, its intent (labeled by hand) in ``X-Demo-Intent``, and carries the query
it was made from (``X-Demo-Subject``, ``X-Demo-Query``), for evaluation beside the form.
Run: python examples/mail/build.py
"""

from __future__ import annotations

import csv
import mailbox
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent
LANGS = {
    "en": (
        "demo_queries.csv",
        "Hi,",
        "Thanks,",
        "On {date}, Tidewell Support <support@tidewell.app> wrote:",
        "Hello, thanks for writing to Tidewell. We are looking into it.",
    ),
    "zh-tw": (
        "zh-tw/demo_queries.csv",
        "您好，",
        "謝謝",
        "在 {date}，Tidewell Support <support@tidewell.app> 寫道：",
        "您好，感謝您來信，我們正在處理。",
    ),
    "zh-cn": (
        "zh-cn/demo_queries.csv",
        "你好，",
        "谢谢",
        "在 {date}，Tidewell Support <support@tidewell.app> 写道：",
        "您好，感谢您的来信，我们正在处理。",
    ),
    "id": (
        "id/demo_queries.csv",
        "Halo,",
        "Terima kasih,",
        "Pada {date}, Tidewell Support <support@tidewell.app> menulis:",
        "Halo, terima kasih sudah menghubungi Tidewell. Kami sedang memeriksanya.",
    ),
}
NAMES = [
    "Ana Lima",
    "Budi Santoso",
    "Chen Wei",
    "Dewi Lestari",
    "Emma Clarke",
    "Lin Mei-hua",
    "Wang Fang",
    "Rizky Pratama",
]
START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
# the intent of each customer's message, labeled by hand for this mailbox (by the article that
# answers it, the same in every language); out_of_scope where no intent of the demo's model
# covers the question (setting up, audit logs, a second trial, Slack privacy)
INTENTS = {
    "acc-001": "out_of_scope", "acc-003": "change_email", "acc-004": "password_reset", "acc-005": "delete_account",
    "acc-006": "team_members", "sec-001": "two_factor", "sec-003": "account_compromised",
    "sec-004": "api_and_webhooks", "sec-007|bil-001": "out_of_scope", "bil-002": "change_plan",
    "bil-004": "invoices_and_vat", "bil-005": "payment_failed", "bil-006": "cancel_subscription",
    "bil-007": "refund_request", "bil-009": "invoices_and_vat", "bil-010": "out_of_scope",
    "int-001": "calendar_sync", "int-003|bil-001": "payment_integrations", "int-006": "payment_integrations",
    "int-009": "out_of_scope", "tro-002": "reminders_not_sent", "tro-003": "calendar_sync",
    "tro-006": "timezone_wrong_times", "tro-007": "booking_availability", "tro-009": "login_problem",
}  # fmt: skip


def intent_of(article_id: str) -> str:
    """The hand label of a message answered by ``article_id`` (any language's copy)."""
    for suffix in ("-zh-tw", "-zh-cn", "-id"):
        article_id = article_id.removesuffix(suffix)
    return INTENTS[article_id]


def _msg(i: int, sender: str, subject: str, body: str, *, html: bool = False, **headers) -> EmailMessage:
    m = EmailMessage()
    m["From"] = sender
    m["To"] = "support@tidewell.app"
    m["Subject"] = subject
    m["Date"] = format_datetime(START + timedelta(hours=7 * i))
    m["Message-ID"] = f"<demo-{i:03d}@mail.example>"
    for k, v in headers.items():
        m[k.replace("_", "-")] = v
    if html:
        paras = "".join(f"<p>{p}</p>" for p in body.split("\n\n"))
        m.set_content(f"<html><body>{paras}</body></html>", subtype="html")
    else:
        m.set_content(body)
    return m


def main() -> None:
    out = HERE / "demo.mbox"
    out.unlink(missing_ok=True)
    box = mailbox.mbox(out)
    i = 0
    for lang, (path, hello, thanks, quote, ack) in LANGS.items():
        with open(EXAMPLES / path, encoding="utf-8") as f:
            rows = [r for r in csv.DictReader(f) if r["article_id"]]
        for n, r in enumerate(rows[:: max(1, len(rows) // 15)][:15]):
            i += 1
            name = NAMES[i % len(NAMES)]
            sender = f"{name} <{name.split()[0].lower()}.{i}@customer.example>"
            subject = r["subject"] or r["description"][:40]
            text = f"{hello}\n\n{r['description']}\n\n{thanks}\n{name}"
            # for evaluation: the article that answers it, and the query as the form would send it
            headers = {"X_Demo_Article": r["article_id"], "X_Demo_Intent": intent_of(r["article_id"]),
                       "X_Demo_Language": lang, "X_Demo_Subject": r["subject"],
                       "X_Demo_Query": r["description"]}  # fmt: skip
            if n % 4 == 1:  # a reply, with the history quoted below it
                date = format_datetime(START + timedelta(hours=7 * i - 3))
                text += "\n\n" + quote.format(date=date) + "\n> " + ack
                subject = "Re: " + subject
                headers.update(In_Reply_To=f"<ack-{i:03d}@tidewell.app>", References=f"<ack-{i:03d}@tidewell.app>")
            if n % 4 == 2:
                text += "\n--\n" + name + " | +62 812 0000 " + f"{i:04d}"  # a signature with a phone
            box.add(_msg(i, sender, subject, text, html=(n % 5 == 3), **headers))
    # three customers write again on their thread (a follow-up: the ticket they still need, not
    # acknowledged again); their client quotes the message they answer
    first = {m["Message-ID"]: m for m in box}
    for orig, text in [
        (2, "Hi again,\n\nI found the setting but the confirmation link never arrives. Can you resend it?"),
        (17, "您好，\n\n我照著做了，還是改不了登入的 email，可以幫我看一下嗎？"),
        (53, "Halo lagi,\n\nsudah sy ganti kartunya tp tagihannya masih gagal. tolong dicek ya"),
    ]:
        i += 1
        m = first[f"<demo-{orig:03d}@mail.example>"]
        subject = str(m["Subject"])
        follow = _msg(i, str(m["From"]), subject if subject.startswith("Re:") else f"Re: {subject}", text,
                      In_Reply_To=str(m["Message-ID"]),
                      References=" ".join(x for x in (m.get("References"), m["Message-ID"]) if x),
                      X_Demo_Followup=str(m["Message-ID"]))  # fmt: skip
        box.add(follow)
    for subject, body, headers in [
        (
            "Automatic reply: Out of office",
            "I am out of the office until Monday and will reply then.",
            {"Auto_Submitted": "auto-replied", "From": "Emma Clarke <emma@customer.example>"},
        ),
        (
            "[bookings-news] December tips",
            "Five ways to fill your calendar in December.",
            {"List_Id": "<news.bookings.example>", "Precedence": "list", "From": "news@bookings.example"},
        ),
        ("Your invoice is ready", "Your monthly invoice is attached.", {"From": "no-reply@payments.example"}),
        ("", "", {"From": "Rizky Pratama <rizky@customer.example>"}),
    ]:
        i += 1
        sender = headers.pop("From")
        box.add(_msg(i, sender, subject, body, **headers))
    box.flush()
    box.close()
    print(f"wrote {out}: {i} messages")


if __name__ == "__main__":
    main()
