"""Content gaps grouped into themes: similar queries together, named by their top terms.

TF-IDF over word uni- and bigrams (English stop words removed), then agglomerative
clustering with average linkage on cosine distance, cut at ``max_distance``. Each theme is
named by the terms that weigh most in it, and shows its count, why its queries are gaps
(abstained, or a ticket after suggestions) and a few example queries. Deterministic, and
needs neither the model nor a server.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Theme:
    """Similar queries grouped together: a name from their top terms, how many, why they
    are gaps (``why`` -> count), the most frequent examples and the share of all gaps."""

    name: str
    count: int
    why: dict[str, int]
    examples: list[str]
    share: float

    def to_dict(self) -> dict:
        return {"name": self.name, "count": self.count, "why": self.why, "examples": self.examples, "share": self.share}


# placeholders left by redaction carry no topic
_PLACEHOLDERS = {"email", "iban", "card", "phone", "number", "ip"}


def themes(
    queries: Sequence[str],
    whys: Sequence[str] | None = None,
    *,
    vectors=None,
    max_distance: float | None = None,
    max_unique: int = 2000,
    top: int = 15,
    examples: int = 3,
) -> list[Theme]:
    """Group ``queries`` into themes, largest first (at most ``top``).

    ``vectors`` (optional): a callable ``list[str] -> np.ndarray`` of unit-length sentence
    embeddings; with it, queries are grouped by meaning (paraphrases together), else by
    shared words. ``max_distance`` is the cosine distance at which clustering stops
    (default 0.55 with embeddings, 0.85 with TF-IDF).
    """
    whys = list(whys) if whys is not None else [""] * len(queries)
    if len(whys) != len(queries):
        raise ValueError(f"{len(queries)} queries but {len(whys)} reasons")
    if not queries:
        return []
    counts = Counter(q.strip() for q in queries if q.strip())
    why_of: dict[str, Counter] = {}
    for q, w in zip(queries, whys, strict=True):
        why_of.setdefault(q.strip(), Counter())[w] += 1
    uniq = [q for q, _ in counts.most_common(max_unique)]
    weights = np.array([counts[q] for q in uniq], dtype=float)
    labels, names = _cluster(uniq, vectors, max_distance)
    groups = []
    for c in sorted(set(labels)):
        members = [i for i, lab in enumerate(labels) if lab == c]
        n = int(weights[members].sum())
        why = Counter()
        for i in members:
            why.update(why_of[uniq[i]])
        ex = [uniq[i] for i in sorted(members, key=lambda i: -weights[i])[:examples]]
        groups.append((names[c], n, dict(why.most_common()), ex))
    total = sum(n for _, n, _, _ in groups)
    groups.sort(key=lambda g: (-g[1], g[0]))
    return [Theme(name, n, why, ex, n / total) for name, n, why, ex in groups[:top]]


def _cluster(texts: list[str], vectors, max_distance: float | None) -> tuple[list[int], dict[int, str]]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(ngram_range=(1, 2), stop_words="english", sublinear_tf=True, min_df=1)
    try:
        X = vec.fit_transform(texts)
    except ValueError:  # only stop words
        return [0] * len(texts), {0: "(no distinctive words)"}
    terms = np.array(vec.get_feature_names_out())
    if len(texts) == 1:
        labels = [0]
    else:
        from sklearn.cluster import AgglomerativeClustering
        from sklearn.preprocessing import normalize

        if vectors is not None:
            dense = np.asarray(vectors(texts), dtype=np.float32)
            max_distance = 0.55 if max_distance is None else max_distance
        else:
            dense = X
            max_distance = 0.85 if max_distance is None else max_distance
        if vectors is None and X.shape[1] > 300:
            from sklearn.decomposition import TruncatedSVD

            dense = TruncatedSVD(n_components=min(100, len(texts) - 1), random_state=0).fit_transform(X)
        dense = normalize(np.asarray(dense.todense() if hasattr(dense, "todense") else dense))
        labels = (
            AgglomerativeClustering(
                n_clusters=None, metric="cosine", linkage="average", distance_threshold=max_distance
            )
            .fit_predict(dense)
            .tolist()
        )
    names = {}
    for c in set(labels):
        rows = [i for i, lab in enumerate(labels) if lab == c]
        w = np.asarray(X[rows].sum(axis=0)).ravel()
        order = [j for j in np.argsort(-w) if w[j] > 0 and terms[j] not in _PLACEHOLDERS]
        picked: list[str] = []
        for j in order:
            t = terms[j]
            if any(t in p or p in t for p in picked):
                continue
            picked.append(t)
            if len(picked) == 3:
                break
        names[c] = ", ".join(picked) or "(no distinctive words)"
    return labels, names
