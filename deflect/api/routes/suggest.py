"""POST /v1/suggest."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

from fastapi import APIRouter, Request, Response

from deflect.api.deps import EngineDep
from deflect.api.schemas import ErrorResponse, SuggestRequest, SuggestResponse
from deflect.engine import SuggestQuery
from deflect.events import suggest_record

router = APIRouter(prefix="/v1", tags=["suggest"])


@lru_cache(maxsize=1)
def encoder_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="deflect-encode")


@router.post(
    "/suggest",
    response_model=SuggestResponse,
    responses={422: {"model": ErrorResponse}, 429: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
    summary="Suggest help-center articles for what the customer is typing",
)
async def suggest(body: SuggestRequest, engine: EngineDep, request: Request) -> Response:
    # Everything that reads the text (encoding, ranking, redaction) runs in a small dedicated
    # pool, one thread per core, never on the event loop: a request with a long, hostile text
    # then delays only itself (each step is linear in the text's length; measured in
    # tests/test_hardening.py against a concurrent normal request).
    address = request.client.host if request.client else None
    limits = getattr(request.app.state, "rate_limits", None)
    sessions = [body.session_id] if body.session_id else []
    if limits is not None and (over := await limits.check("suggest", address, sessions)) is not None:
        return over
    q = SuggestQuery(**body.model_dump())
    recorder = request.app.state.recorder
    record = recorder is not None and engine.settings.record_suggestions

    def answer():
        res = engine.suggest(q, encoding=engine.encode_query(q.text()))
        # the caller's keyed hash only when there is a record to put it in
        return res, suggest_record(q, res, engine.provenance.client_key(address)) if record else None

    res, rec = await asyncio.get_running_loop().run_in_executor(encoder_pool(), answer)
    request.app.state.metrics.answered(res)
    if rec is not None:
        recorder.record_suggestion(rec)  # written behind the response
    out = SuggestResponse(
        request_id=res.request_id,
        variant=res.variant,
        abstained=res.abstained,
        reason=res.reason,
        intent={"label": res.intent.label, "confidence": round(res.intent.confidence, 4)} if res.intent else None,
        suggestions=[
            {"article_id": s.article_id, "title": s.title, "url": s.url, "snippet": s.snippet, "score": s.score}
            for s in res.suggestions
        ],
        index_version=res.index_version,
        model_version=res.model_version,
        token=res.token,
    )
    # serialised once here; returning the model would make FastAPI validate it a second time
    return Response(content=out.model_dump_json(), media_type="application/json")
