"""``deflect mail poll``: an IMAP folder read into the :class:`~deflect.mailer.MailDesk`.

The folder is read with ``imapclient`` and never changed (it is selected read-only: no flag
set, nothing moved or deleted), so a help desk may read the same mailbox. What has been
handled is kept in the event store, twice over:

- the folder's **cursor** (``mail_cursors``: its ``UIDVALIDITY`` and the last UID handled),
  written after each message, so a poll starts where the last one stopped;
- each **message's key** (``mail_messages``: its ``Message-ID``, else a hash of its bytes),
  claimed before anything is done with it. A crash between handling a message and moving the
  cursor fetches it again, and the desk sees it is known: nothing is handled or sent twice.
  When the server renumbers the folder (a new ``UIDVALIDITY``), every message is fetched
  again and the keys keep the ones already handled from being handled again.

A message larger than ``mail_max_bytes`` is not downloaded: its headers are, and it is
recorded as ``too_large``.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from deflect.core.errors import ConfigError, DeflectError, InvalidInputError

log = logging.getLogger("deflect.mail")
BATCH = 25  # messages fetched per round trip


@dataclass
class PollResult:
    """What one poll did."""

    mailbox: str
    fetched: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    uidvalidity_changed: bool = False

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


def mailbox_id(settings) -> str:
    """The name a folder's cursor is kept under: ``imap://user@host:port/folder``."""
    return f"imap://{settings.imap_user}@{settings.imap_host}:{settings.imap_port}/{settings.imap_folder}"


def connect(settings, *, context: ssl.SSLContext | None = None):
    """A logged-in :class:`imapclient.IMAPClient` on the settings' server."""
    from imapclient import IMAPClient

    if not settings.imap_host:
        raise ConfigError("imap_host: not set (the IMAP server deflect mail poll reads)")
    context = context or ssl.create_default_context()
    try:
        client = IMAPClient(settings.imap_host, port=settings.imap_port, ssl=settings.imap_security == "tls",
                            ssl_context=context, timeout=30)  # fmt: skip
        if settings.imap_security == "starttls":
            client.starttls(context)
        client.login(settings.imap_user, settings.imap_password.get_secret_value())
    except (OSError, ssl.SSLError) as exc:
        raise DeflectError(f"imap: cannot reach {settings.imap_host}:{settings.imap_port}: {exc}") from exc
    except Exception as exc:  # imapclient's LoginError, IMAP4.error: the server said no
        raise DeflectError(f"imap: {settings.imap_host}: {exc}") from exc
    return client


def poll_once(desk, client, mailbox: str, folder: str = "INBOX") -> PollResult:
    """Handle every message of ``folder`` after the stored cursor (see the module docstring)."""
    store, limit = desk.store, desk.settings.mail_max_bytes
    result = PollResult(mailbox)
    try:
        uidvalidity = int(client.select_folder(folder, readonly=True)[b"UIDVALIDITY"])
    except Exception as exc:  # no such folder, no rights
        raise DeflectError(f"imap: cannot open folder {folder!r}: {exc}") from exc
    cursor = store.mail_cursor(mailbox)
    last = 0
    if cursor is not None:
        if cursor[0] == uidvalidity:
            last = cursor[1]
        else:
            result.uidvalidity_changed = True
            log.warning("%s: UIDVALIDITY changed (%d -> %d): reading it all again; known messages are skipped",
                        mailbox, cursor[0], uidvalidity)  # fmt: skip
    uids = sorted(u for u in client.search(["UID", f"{last + 1}:*"]) if u > last)
    for i in range(0, len(uids), BATCH):
        batch = uids[i : i + BATCH]
        sizes = client.fetch(batch, [b"RFC822.SIZE"])
        small = [u for u in batch if sizes.get(u, {}).get(b"RFC822.SIZE", 0) <= limit]
        bodies = client.fetch(small, [b"BODY.PEEK[]"]) if small else {}
        big = [u for u in batch if u not in small]
        heads = client.fetch(big, [b"BODY.PEEK[HEADER]"]) if big else {}
        for uid in batch:
            if uid in bodies:
                raw = bodies[uid][b"BODY[]"]
                try:
                    handled = desk.handle_raw(raw, mailbox)
                    result.count("duplicate" if handled.duplicate else handled.record.outcome)
                except InvalidInputError:
                    result.count("malformed")  # recorded by the desk, with the reason
            else:
                size = sizes.get(uid, {}).get(b"RFC822.SIZE", 0)
                handled = desk.record_too_large(heads.get(uid, {}).get(b"BODY[HEADER]", b""), mailbox, size)
                result.count("duplicate" if handled.duplicate else "too_large")
            result.fetched += 1
            store.set_mail_cursor(mailbox, uidvalidity, uid)
    if not uids and (cursor is None or result.uidvalidity_changed):  # else the loop wrote it
        store.set_mail_cursor(mailbox, uidvalidity, 0)
    return result


def poll(desk, settings, *, once: bool = False, interval: float = 60.0, connect_fn: Callable | None = None,
         stop: Callable[[], bool] = lambda: False) -> list[PollResult]:  # fmt: skip
    """Poll the settings' folder every ``interval`` seconds (or ``once``). A server or store
    that cannot be reached is logged and tried again at the next poll (with ``once``: raised)."""
    connect_fn = connect_fn or (lambda: connect(settings))
    mailbox, results = mailbox_id(settings), []
    desk.reconcile()
    while True:
        try:
            client = connect_fn()
            try:
                results.append(r := poll_once(desk, client, mailbox, settings.imap_folder))
                log.info("%s: %d fetched %s", mailbox, r.fetched, r.outcomes)
            finally:
                with contextlib.suppress(Exception):  # the connection may be gone already
                    client.logout()
        except DeflectError as exc:
            if once:
                raise
            log.warning("%s: poll failed, trying again in %gs: %s", mailbox, interval, exc)
        if once or stop():
            return results
        time.sleep(interval)
