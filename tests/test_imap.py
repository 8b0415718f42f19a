"""`deflect mail poll` against a real IMAP server: Debian's Dovecot, started here on a free
local port with its own configuration, holding customers' mail in English, Traditional and
Simplified Chinese (Big5, GB2312) and Indonesian. Each message is handled once, also after a
crash between handling it and moving the cursor, and after the server renumbers the folder."""

from __future__ import annotations

import mailbox
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from deflect.config import Settings
from deflect.engine import Engine
from deflect.imap import connect, mailbox_id, poll, poll_once
from deflect.kb_ingest.pipeline import ingest
from deflect.mailer import MailDesk
from deflect.store import open_store
from tests.conftest import small_kb
from tests.test_mail import message
from tests.test_mailer import free_port

CONF = """base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
first_valid_uid = 1
mail_location = maildir:{d}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/users
}}
userdb {{
  driver = static
  args = uid={user} gid={user} home={d}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""


@pytest.fixture
def dovecot():
    """A Dovecot IMAP server for one test: user ``desk``, password ``pw``."""
    binary = shutil.which("dovecot") or ("/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None)
    if binary is None:
        if os.environ.get("DEFLECT_REQUIRE_IMAP"):
            pytest.fail("DEFLECT_REQUIRE_IMAP is set but dovecot is not installed (apt-get install dovecot-imapd)")
        pytest.skip("the IMAP tests need Debian's dovecot-imapd (apt-get install dovecot-imapd)")
    d = Path(tempfile.mkdtemp(prefix="deflect-imap-"))
    d.chmod(0o755)
    user = "dovecot"  # Dovecot's own unprivileged user owns the mail
    for sub in ("mail", "home"):
        (d / sub).mkdir()
        shutil.chown(d / sub, user, user)
    (d / "users").write_text("desk:{PLAIN}pw\n")
    port = free_port()
    conf = d / "dovecot.conf"
    conf.write_text(CONF.format(d=d, port=port, user=user))
    subprocess.run([binary, "-c", str(conf)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                with __import__("socket").create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.05)
        yield {"imap_host": "127.0.0.1", "imap_port": port, "imap_security": "none", "imap_user": "desk",
               "imap_password": "pw", "dir": d}  # fmt: skip
    finally:
        pid = int((d / "run" / "master.pid").read_text())
        os.kill(pid, signal.SIGTERM)
        shutil.rmtree(d, ignore_errors=True)


CUSTOMERS = [  # (text, charset, sender, the acknowledgement's words)
    ("I need to reset my password, the link does not work.", "utf-8", "ana@example.com", "within 24 hours"),
    ("我的帳號密碼忘記了，要怎麼重設密碼 password？", "big5", "mei@example.tw", "小時內回覆"),
    ("我想申请退款 refund，信用卡 card payment 被扣了两次。", "gb2312", "li@example.cn", "小时内回复"),
    ("Kalender google calendar saya tidak sync, mohon bantuannya.", "utf-8", "budi@example.id", "dalam 24 jam"),
]


def fill(client, n: int = 4) -> None:
    for i, (text, charset, sender, _) in enumerate(CUSTOMERS[:n]):
        client.append("INBOX", message(text, charset=charset, sender=sender, message_id=f"<c{i}@customers>"))


@pytest.fixture
def desk(tmp_path, home, fake_embedder, dovecot):
    ingest(small_kb(tmp_path), home, fake_embedder)
    s = Settings(home=home, min_score=0.1, reload_interval=0.0, control_share=0.0,
                 **{k: v for k, v in dovecot.items() if k != "dir"})  # fmt: skip
    store = open_store("", home)
    yield MailDesk(Engine(s, fake_embedder), store)
    store.close()


def outbox(desk) -> list:
    return list(mailbox.Maildir(Path(desk.settings.home) / "mail" / "outbox"))


def test_each_message_is_handled_once_and_the_mailbox_is_left_as_it_was(desk):
    s = desk.settings
    client = connect(s)
    fill(client)
    (r,) = poll(desk, s, once=True)
    assert r.fetched == 4 and r.outcomes == {"triaged": 4}
    acks = outbox(desk)
    assert sorted(a["To"] for a in acks) == sorted(c[2] for c in CUSTOMERS)
    for text, _, sender, words in CUSTOMERS:
        (ack,) = [a for a in acks if a["To"] == sender]
        assert words in ack.get_payload(decode=True).decode("utf-8"), (sender, text)
    (again,) = poll(desk, s, once=True)
    assert again.fetched == 0 and len(outbox(desk)) == 4
    client.select_folder("INBOX", readonly=True)
    flags = client.get_flags(client.search(["ALL"]))
    assert all(b"\\Seen" not in f for f in flags.values())  # read-only: nothing marked, moved or deleted
    client.append("INBOX", message("refund my card payment", message_id="<c9@customers>", sender="new@x.example"))
    (later,) = poll(desk, s, once=True)
    assert later.fetched == 1 and len(outbox(desk)) == 5
    client.logout()


def test_a_crash_before_the_cursor_moved_or_a_renumbered_folder_handles_nothing_twice(desk):
    s = desk.settings
    client = connect(s)
    fill(client, 2)
    poll(desk, s, once=True)
    box = mailbox_id(s)
    validity, last = desk.store.mail_cursor(box)
    desk.store.set_mail_cursor(box, validity, 0)  # as if the process died before writing the cursor
    r = poll_once(desk, client, box)
    assert r.fetched == 2 and r.outcomes == {"duplicate": 2}
    desk.store.set_mail_cursor(box, validity + 1, last)  # the server renumbered the folder
    r = poll_once(desk, client, box)
    assert r.uidvalidity_changed and r.outcomes == {"duplicate": 2}
    assert desk.store.mail_cursor(box) == (validity, last)
    assert len(outbox(desk)) == 2 and len(desk.store.mail_messages()) == 2
    client.logout()


def test_a_message_over_the_limit_is_recorded_without_being_downloaded(desk):
    from email.message import EmailMessage

    s = desk.settings
    s.mail_max_bytes = 64 * 1024
    client = connect(s)
    m = EmailMessage()
    m["From"], m["Subject"], m["Message-ID"] = "ana@example.com", "logs", "<big@customers>"
    m.set_content("my password reset fails, logs attached")
    m.add_attachment(os.urandom(300_000), maintype="application", subtype="zip", filename="logs.zip")
    client.append("INBOX", m.as_bytes())
    fill(client, 1)
    (r,) = poll(desk, s, once=True)
    assert r.outcomes == {"too_large": 1, "triaged": 1}
    (big,) = desk.store.mail_messages(key="<big@customers>")
    assert big.outcome == "too_large" and "limit 65536" in big.error and big.reply_state == "none"
    assert poll(desk, s, once=True)[0].fetched == 0
    client.logout()


def test_a_wrong_password_or_an_unreachable_server_is_a_clear_error(desk):
    from deflect.core.errors import DeflectError

    s = desk.settings
    s.imap_password = type(s.imap_password)("wrong")
    with pytest.raises(DeflectError, match="imap"):
        poll(desk, s, once=True)
    s.imap_port = free_port()
    with pytest.raises(DeflectError, match="cannot reach"):
        poll(desk, s, once=True)


@pytest.mark.slow
def test_the_cli_polls_replays_and_reports_with_the_real_engine(demo_home, dovecot, tmp_path, monkeypatch):
    """`deflect mail poll --once`, `deflect mail triage --deliver` and `deflect mail status`
    on the demo's index with the real model: each message once, acknowledgements in the
    outbox, the demo mailbox replayed twice without a second acknowledgement."""
    import json

    from imapclient import IMAPClient
    from typer.testing import CliRunner

    from deflect.cli.main import app
    from tests.conftest import ROOT

    monkeypatch.setenv("DEFLECT_DATABASE_URL", f"sqlite:///{tmp_path / 'events.db'}")
    for k in ("imap_host", "imap_port", "imap_security", "imap_user", "imap_password"):
        monkeypatch.setenv(f"DEFLECT_{k.upper()}", str(dovecot[k]))
    client = IMAPClient("127.0.0.1", port=dovecot["imap_port"], ssl=False)
    client.login("desk", "pw")
    fill(client)
    client.logout()
    run = CliRunner().invoke
    home = ["--home", str(demo_home)]
    r = run(app, ["mail", "poll", "--once", *home])
    assert r.exit_code == 0, r.output
    assert "4 fetched: triaged 4" in r.stdout
    assert "0 fetched" in run(app, ["mail", "poll", "--once", *home]).stdout
    box = ROOT / "examples" / "mail" / "demo.mbox"
    first = run(app, ["mail", "triage", str(box), "--deliver", *home])
    assert first.exit_code == 0, first.output
    again = run(app, ["mail", "triage", str(box), "--deliver", "--json", *home])
    rows = [json.loads(line) for line in again.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 67 and {x["outcome"] for x in rows} == {"duplicate"}
    status = json.loads(run(app, ["mail", "status", "--json", *home]).stdout)
    assert status["messages"] == 71 and status["outcomes"]["automatic"] == 3 and status["followups"] == 3
    assert status["replies"]["none"] == 3 + 3  # the machines' mail and the follow-ups: no acknowledgement
    sent = status["replies"]["sent"]
    assert sent == len(list(mailbox.Maildir(demo_home / "mail" / "outbox"))) and sent >= 60
