"""From API calls to event-store rows: what the server records of each suggest call.

The query text is redacted (:func:`deflect.redact.redact`) before it leaves this module.
"""

from __future__ import annotations

from deflect.engine import SuggestQuery, SuggestResult
from deflect.redact import redact
from deflect.store.base import SuggestRecord


def suggest_record(q: SuggestQuery, res: SuggestResult, client: str | None = None) -> SuggestRecord:
    """The row recorded for one ``/v1/suggest`` call (query redacted, what was and would have
    been shown; ``client``: the caller's keyed address hash)."""
    intent = res.intent
    return SuggestRecord(
        request_id=res.request_id,
        session_id=q.session_id,
        variant=res.variant,
        form_id=q.form_id,
        channel=q.channel,
        query=redact(q.text()),
        abstained=res.abstained,
        reason=res.reason,
        intent_label=intent.label if intent else None,
        intent_confidence=round(intent.confidence, 4) if intent else None,
        shown=[s.article_id for s in res.suggestions],
        would_show=[s.article_id for s in res.would_show],
        top_score=res.would_show[0].score if res.would_show else None,
        index_version=res.index_version,
        model_version=res.model_version,
        latency_ms=round(res.latency_ms, 3),
        client=client,
    )
