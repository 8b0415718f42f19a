"""POST /v1/suggest."""

from __future__ import annotations

from fastapi import APIRouter

from deflect.api.deps import EngineDep
from deflect.api.schemas import ErrorResponse, SuggestRequest, SuggestResponse
from deflect.engine import SuggestQuery

router = APIRouter(prefix="/v1", tags=["suggest"])


@router.post(
    "/suggest",
    response_model=SuggestResponse,
    responses={422: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
    summary="Suggest help-center articles for what the customer is typing",
)
def suggest(body: SuggestRequest, engine: EngineDep) -> SuggestResponse:
    res = engine.suggest(SuggestQuery(**body.model_dump()))
    return SuggestResponse(
        request_id=res.request_id,
        variant=res.variant,
        abstained=res.abstained,
        reason=res.reason,
        intent=res.intent,
        suggestions=[
            {"article_id": s.article_id, "title": s.title, "url": s.url, "snippet": s.snippet, "score": s.score}
            for s in res.suggestions
        ],
        index_version=res.index_version,
        model_version=res.model_version,
    )
