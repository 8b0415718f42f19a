"""Offline evaluation on a team's own data: retrieval quality, the precision/coverage
trade-off, a pre-launch deflection estimate, and threshold tuning.

Everything here runs labeled queries (docs/evaluation.md) through the real engine in
process; no server is involved. The metric functions are those of
:mod:`deflect.eval.metrics`, which ``make bench`` uses too. Each report is a dataclass
whose ``to_dict`` is the ``report.json`` the CLI writes (its keys are a public interface).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime

import numpy as np

from deflect.eval.metrics import CurvePoint, precision_coverage, recall_at_k, threshold_for_precision
from deflect.eval.queries import LabeledQuery
from deflect.eval.retrieval import rank_queries, retrieval_metrics
from deflect.models.encoding import QueryEncoding, encode_queries


@dataclass
class Answer:
    """The engine's answer to one labeled query, before any threshold is applied.

    ``blocked`` is set when the engine would show nothing whatever the threshold
    (``out_of_scope``, ``never_deflect``, ``no_match``).
    """

    ranked: list[str]
    top_score: float | None
    blocked: str | None
    intent: str | None


def engine_answers(
    engine,
    queries: Sequence[LabeledQuery],
    *,
    k: int = 10,
    encoding: QueryEncoding | None = None,
    alpha: float | None = None,
) -> list[Answer]:
    """Run every query through ``engine`` (index, intent model, boost and abstention rules).

    ``encoding``: the queries' :func:`~deflect.models.encoding.encode_queries` when the caller
    made it already (for the engine's current intent model). ``alpha``: another convex
    fusion weight than the engine's."""
    from deflect.engine import SuggestQuery

    texts = [q.text for q in queries]
    if encoding is None:
        encoding = encode_queries(engine.embedder, texts, engine.model.get_optional(), batch_size=32)
    out = []
    for i, q in enumerate(queries):
        r = engine.suggest(
            SuggestQuery(subject=q.subject, description=q.description, k=k), encoding=encoding.row(i), alpha=alpha
        )
        blocked = r.reason if r.abstained and r.reason != "low_confidence" else None
        out.append(
            Answer(
                [s.article_id for s in r.would_show],
                r.would_show[0].score if r.would_show else None,
                blocked,
                r.intent.label if r.intent else None,
            )
        )
    return out


def curve_of(
    answers: Sequence[Answer], relevant: Sequence[frozenset[str]], thresholds: Sequence[float] | None = None
) -> list[CurvePoint]:
    """Precision against coverage over ``thresholds`` (default: every top score); blocked
    queries are never shown."""
    return precision_coverage(
        [a.ranked[0] if a.ranked and not a.blocked else None for a in answers],
        [a.top_score if not a.blocked else None for a in answers],
        relevant,
        thresholds,
    )


def thin(points: Sequence[CurvePoint], n: int = 200) -> list[CurvePoint]:
    """At most ``n`` points of a curve, evenly spread (for reports)."""
    if len(points) <= n:
        return list(points)
    idx = np.unique(np.linspace(0, len(points) - 1, n).round().astype(int))
    return [points[i] for i in idx]


@dataclass(frozen=True)
class TargetFigures:
    """The threshold with the most coverage that reaches ``precision`` (None: none does)."""

    precision: float
    threshold: float | None
    coverage: float
    achieved_precision: float | None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SystemFigures:
    """One system's ranking quality on the labeled queries."""

    metrics: dict[str, float]
    k: int
    recall_at_k: float
    curve: list[CurvePoint]
    blocked: int
    target: TargetFigures | None = None

    def to_dict(self) -> dict:
        out = {
            "metrics": self.metrics,
            f"recall@{self.k}": self.recall_at_k,
            "curve": [asdict(p) for p in self.curve],
            "blocked": self.blocked,
        }
        if self.target is not None:
            out["target"] = self.target.to_dict()
        return out


@dataclass(frozen=True)
class RetrievalReport:
    """``deflect eval retrieval``: lexical only, dense only and the default engine."""

    queries: int
    answerable: int
    unanswerable: int
    k: int
    index_version: str
    model_version: str | None
    current_threshold: float
    systems: dict[str, SystemFigures]
    source: dict[str, str | None] | None = None
    created_at: datetime | None = None

    def to_dict(self) -> dict:
        out = {
            "queries": self.queries,
            "answerable": self.answerable,
            "unanswerable": self.unanswerable,
            "k": self.k,
            "index_version": self.index_version,
            "model_version": self.model_version,
            "current_threshold": self.current_threshold,
            "systems": {name: f.to_dict() for name, f in self.systems.items()},
        }
        if self.source is not None:
            out["source"] = self.source
        if self.created_at is not None:
            out["created_at"] = self.created_at.isoformat()
        return out


def evaluate_retrieval(
    engine, queries: Sequence[LabeledQuery], *, k: int = 3, target_precision: float | None = None
) -> RetrievalReport:
    """Lexical only, dense only and the default engine, side by side, on the same queries."""
    if not queries:
        raise ValueError("no queries")
    s = engine.settings
    bundle = engine.index.get()
    relevant = [q.relevant for q in queries]
    texts = [q.text for q in queries]
    # encoded once for all three systems, for the current intent model
    encoding = encode_queries(engine.embedder, texts, engine.model.get_optional(), batch_size=32)
    vectors = encoding.embedding
    systems: dict[str, list[Answer]] = {}
    for name, mode in (("lexical only", "lexical"), ("dense only", "dense")):
        r = rank_queries(
            bundle,
            engine.embedder,
            texts,
            mode=mode,
            alpha=engine.fusion_alpha(bundle),
            title_weight=s.title_weight,
            candidates=s.candidates,
            k=10,
            vectors=None if mode == "lexical" else vectors,
        )
        tops = r.top_scores
        if mode == "lexical":  # lexical scores are max-normalised per query: threshold the raw BM25 instead
            tops = [float(bundle.lexical.scores(t).max()) if ids else None for t, ids in zip(texts, r.ids, strict=True)]
        systems[name] = [Answer(ids, top, None, None) for ids, top in zip(r.ids, tops, strict=True)]
    systems["default engine"] = engine_answers(engine, queries, k=10, encoding=encoding)
    model = engine.model.get_optional()
    figures: dict[str, SystemFigures] = {}
    for name, answers in systems.items():
        ranked = [a.ranked for a in answers]
        pts = curve_of(answers, relevant)
        target = None
        if target_precision is not None:
            best = threshold_for_precision(pts, target_precision)
            target = TargetFigures(
                precision=target_precision,
                threshold=best.threshold if best else None,
                coverage=best.coverage if best else 0.0,
                achieved_precision=best.precision if best else None,
            )
        figures[name] = SystemFigures(
            metrics=retrieval_metrics(ranked, relevant),
            k=k,
            recall_at_k=recall_at_k(ranked, relevant, k),
            curve=thin(pts),
            blocked=sum(bool(a.blocked) for a in answers),
            target=target,
        )
    return RetrievalReport(
        queries=len(queries),
        answerable=sum(bool(r) for r in relevant),
        unanswerable=sum(not r for r in relevant),
        k=k,
        index_version=bundle.version,
        model_version=model.version if model is not None else None,
        current_threshold=engine.min_score(bundle),
        systems=figures,
    )


@dataclass(frozen=True)
class OutcomeShares:
    """At one threshold: the shares of queries shown a right article first, shown a wrong
    one first, and shown nothing (they add up to one)."""

    threshold: float
    right_first: float
    wrong_shown: float
    abstained: float

    def to_dict(self) -> dict:
        return asdict(self)


def estimate_deflection(
    answers: Sequence[Answer], relevant: Sequence[frozenset[str]], *, thresholds: Sequence[float] | None = None
) -> list[OutcomeShares]:
    """At each threshold: the share of queries that would see a right article first, that would
    be shown a wrong one first (an unanswerable query shown anything counts as wrong), and
    that would see nothing. The three shares add up to one."""
    if len(answers) != len(relevant):
        raise ValueError(f"{len(answers)} answers but {len(relevant)} relevance sets")
    n = len(answers)
    if thresholds is None:
        scores = sorted({round(a.top_score, 4) for a in answers if a.top_score is not None and not a.blocked})
        thresholds = [0.0, *scores]
    # the same counting as the precision/coverage curve: right = correct, wrong = shown - correct
    return [
        OutcomeShares(
            threshold=p.threshold,
            right_first=p.correct / n if n else math.nan,
            wrong_shown=(p.shown - p.correct) / n if n else math.nan,
            abstained=(n - p.shown) / n if n else math.nan,
        )
        for p in curve_of(answers, relevant, thresholds)
    ]


DEFLECTION_ASSUMPTIONS = [
    "The labeled queries stand for real contact-form traffic (mix of topics and of unanswerable questions).",
    "A query 'deflects' at most when the right article is shown first; this is an upper bound: customers "
    "still have to open and read it, and some will send the form anyway.",
    "A wrong article shown first costs the customer time and trust, even when the right one is further down.",
    "Only the live control group (deflect report) measures tickets really avoided; this estimate is for "
    "choosing a threshold before launch.",
]


@dataclass(frozen=True)
class DeflectionEstimate:
    """``deflect eval deflection``: the outcome shares at a grid of thresholds (``table``)
    and at every top score (``curve``), with the assumptions the estimate rests on."""

    queries: int
    unanswerable: int
    current_threshold: float
    table: list[OutcomeShares]
    curve: list[OutcomeShares]
    assumptions: list[str] = field(default_factory=lambda: list(DEFLECTION_ASSUMPTIONS))
    source: dict[str, str | None] | None = None
    created_at: datetime | None = None

    def to_dict(self) -> dict:
        out = {
            "queries": self.queries,
            "unanswerable": self.unanswerable,
            "current_threshold": self.current_threshold,
            "table": [r.to_dict() for r in self.table],
            "curve": [r.to_dict() for r in self.curve],
            "assumptions": self.assumptions,
        }
        if self.source is not None:
            out["source"] = self.source
        if self.created_at is not None:
            out["created_at"] = self.created_at.isoformat()
        return out


def deflection_estimate(
    answers: Sequence[Answer], relevant: Sequence[frozenset[str]], current_threshold: float
) -> DeflectionEstimate:
    """The pre-launch estimate: :func:`estimate_deflection` at every top score, and at 0,
    0.30 to 0.75 in steps of 0.05 and the current threshold."""
    grid = [0.0] + [round(0.3 + 0.05 * i, 2) for i in range(10)] + [current_threshold]
    return DeflectionEstimate(
        queries=len(answers),
        unanswerable=sum(not r for r in relevant),
        current_threshold=current_threshold,
        table=estimate_deflection(answers, relevant, thresholds=sorted(set(grid))),
        curve=estimate_deflection(answers, relevant),
    )


@dataclass(frozen=True)
class PrecisionCoverage:
    """Expected precision of the top suggestion, and the share of queries shown something."""

    precision: float
    coverage: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class IntentThreshold:
    """One intent's own threshold, tuned on its ``queries``."""

    threshold: float
    queries: int
    coverage: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ThresholdTuning:
    """What ``deflect tune`` found: the global threshold (None when no threshold reaches
    the target), per-intent ones, and the precision and coverage expected with them.
    :meth:`to_dict` is what ``tuning.json`` stores."""

    target_precision: float
    threshold: float | None
    expected: PrecisionCoverage | None
    per_intent: dict[str, IntentThreshold] = field(default_factory=dict)
    expected_per_intent: PrecisionCoverage | None = None

    def to_dict(self) -> dict:
        out = {
            "target_precision": self.target_precision,
            "threshold": self.threshold,
            "expected": self.expected.to_dict() if self.expected else None,
            "per_intent": {k: v.to_dict() for k, v in self.per_intent.items()},
        }
        if self.expected_per_intent is not None:
            out["expected_per_intent"] = self.expected_per_intent.to_dict()
        return out


def tune_thresholds(
    answers: Sequence[Answer],
    relevant: Sequence[frozenset[str]],
    target_precision: float,
    *,
    per_intent: bool = False,
    min_queries: int = 20,
) -> ThresholdTuning:
    """The global threshold reaching ``target_precision`` with the most coverage, and (with
    ``per_intent``) one per predicted intent that has at least ``min_queries`` queries, where
    its own queries reach the target; other intents fall back to the global threshold."""
    if not 0 < target_precision <= 1:
        raise ValueError(f"target precision must be in (0, 1], got {target_precision}")
    pts = curve_of(answers, relevant)
    best = threshold_for_precision(pts, target_precision)
    if best is None:
        return ThresholdTuning(target_precision, None, None)
    expected = PrecisionCoverage(best.precision, best.coverage)
    if not per_intent:
        return ThresholdTuning(target_precision, best.threshold, expected)
    groups: dict[str, list[int]] = {}
    for i, a in enumerate(answers):
        if a.intent:
            groups.setdefault(a.intent, []).append(i)
    own: dict[str, IntentThreshold] = {}
    for intent, idx in sorted(groups.items()):
        if len(idx) < min_queries:
            continue
        p = threshold_for_precision(curve_of([answers[i] for i in idx], [relevant[i] for i in idx]), target_precision)
        if p is not None:
            own[intent] = IntentThreshold(p.threshold, len(idx), p.coverage)
    # what the whole set gets with the per-intent thresholds
    shown = correct = 0
    for a, rel in zip(answers, relevant, strict=True):
        t = own[a.intent].threshold if a.intent in own else best.threshold
        if a.blocked or not a.ranked or a.top_score is None or a.top_score < t:
            continue
        shown += 1
        correct += a.ranked[0] in rel
    return ThresholdTuning(
        target_precision,
        best.threshold,
        expected,
        own,
        PrecisionCoverage(correct / shown if shown else math.nan, shown / len(answers)),
    )


#: convex-fusion weights of the dense score that ``deflect tune`` tries; 0 is lexical alone
ALPHA_GRID = (0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@dataclass(frozen=True)
class AlphaFigures:
    """One fusion weight on the tuning queries: Recall@1 of the answerable queries, and
    the coverage reached at the target precision (0 when it is not reached)."""

    alpha: float
    recall_at_1: float
    coverage: float
    threshold: float | None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FusionTuning:
    """The fusion weight ``deflect tune`` chose, and every weight it tried."""

    alpha: float
    tried: list[AlphaFigures]

    def to_dict(self) -> dict:
        return {"fusion_alpha": self.alpha, "fusion_tried": [t.to_dict() for t in self.tried]}


def choose_alpha(
    per_alpha: dict[float, Sequence[Answer]],
    relevant: Sequence[frozenset[str]],
    target_precision: float,
    *,
    current: float,
) -> FusionTuning:
    """The fusion weight for a knowledge base, from its answers at each weight.

    Only weights whose Recall@1 is not below lexical alone's (weight 0, which must be among
    them) are eligible, so a knowledge base where lexical matching wins never ends up ranking
    worse than lexical alone. Among those, the one reaching ``target_precision`` with the
    most coverage wins; then the higher Recall@1; then the weight closest to ``current``."""
    if 0.0 not in per_alpha:
        raise ValueError("the weights tried must include 0 (lexical alone)")
    answerable = [i for i, r in enumerate(relevant) if r]
    tried = []
    for alpha, answers in sorted(per_alpha.items()):
        hits = sum(bool(answers[i].ranked) and answers[i].ranked[0] in relevant[i] for i in answerable)
        r1 = hits / len(answerable) if answerable else 0.0
        best = threshold_for_precision(curve_of(answers, relevant), target_precision)
        tried.append(AlphaFigures(alpha, r1, best.coverage if best else 0.0, best.threshold if best else None))
    floor = next(t.recall_at_1 for t in tried if t.alpha == 0.0)
    eligible = [t for t in tried if t.recall_at_1 >= floor - 1e-12]
    pick = max(eligible, key=lambda t: (round(t.coverage, 9), round(t.recall_at_1, 9), -abs(t.alpha - current)))
    return FusionTuning(pick.alpha, tried)


def flatten(d, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested report as ``a.b.c -> value`` (lists of points are skipped)."""
    out: dict[str, float] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(d, bool):
        pass
    elif isinstance(d, (int, float)) and d is not None:
        out[prefix] = float(d)
    return out


def compare_reports(a: dict, b: dict) -> list[tuple[str, float | None, float | None, float | None]]:
    """``(metric, A, B, B - A)`` for every numeric figure in either report."""
    fa, fb = flatten(a), flatten(b)
    rows = []
    for key in sorted(set(fa) | set(fb)):
        va, vb = fa.get(key), fb.get(key)
        diff = vb - va if va is not None and vb is not None else None
        rows.append((key, va, vb, diff))
    return rows
