"""The intent classifier: sentence-encoder features and lexical n-grams, one linear model.

Features of a text: the sentence embedding and the max-pooled token embedding of the
encoder (two views of one forward pass), plus TF-IDF word 1-3-grams and character 1-6-grams.
A linear SVM on them, plus a nearest-neighbour term: ``nn_weight`` times the cosine of the
sentence embedding to each class's nearest training example (the weight is chosen on
validation predictions). These decision values become probabilities by temperature scaling,
fitted on validation predictions. Out of scope is decided by a threshold on a score that
combines the calibrated confidence with the cosine to the nearest training examples of the
predicted class, chosen on validation predictions (see :func:`choose_oos_threshold`); training
(``deflect.models.training``) gets those from cross-validation, or from a held-out split.
With enough data, training adds a fine-tuned head (``models/intent_head.py``: the encoder's
last two layers re-trained on the intents) and predictions are the weighted geometric mean of
the two models' probabilities (:meth:`IntentClassifier.log_proba`).

Saved without pickle: vocabularies as JSON, weights as ``.npy``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.svm import LinearSVC

from deflect.core.errors import BundleError
from deflect.models.embedders.protocol import Embedder, EncoderViews
from deflect.models.encoding import ENCODE_BATCH, QueryEncoding
from deflect.models.intent_head import OnnxHead, combine

log = logging.getLogger("deflect.intent")

DEFAULT_PARAMS = {
    "word_ngrams": [1, 3],
    "char_ngrams": [1, 6],
    "char_min_df": 2,
    "embedding_weight": 2.0,
    "max_pool_weight": 1.0,
    "C": 0.3,
    "knn_k": 5,
    "oos_weight": 0.5,
    # weight of the nearest-neighbour term of the decision values; None: chosen on validation
    # predictions by :func:`choose_nn_weight` (``deflect.models.training`` does; a bare fit uses 0)
    "nn_weight": None,
    # epochs of the fine-tuned head (models/intent_head.py); 0 leaves it out
    "head_epochs": 4,
    # the head's weight in the combination; None: chosen on validation texts
    # (:func:`models.intent_head.choose_head_weight`)
    "head_weight": None,
    # fewer held-out texts than this to weigh the head on: no head (on the demo's 71, five-fold
    # accuracy was 0.78-0.79 at every weight, and the threshold is better chosen out of fold)
    "head_min_validation": 200,
}
NN_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0)


@dataclass(frozen=True)
class IntentPrediction:
    """The predicted label, its calibrated confidence, and the out-of-scope decision."""

    label: str
    confidence: float
    oos_score: float
    out_of_scope: bool

    def summary(self) -> dict:
        """What the API and the CLI show: label, confidence (4 decimals), out of scope."""
        return {"label": self.label, "confidence": round(self.confidence, 4), "out_of_scope": self.out_of_scope}


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(decision: np.ndarray, y_idx: np.ndarray) -> float:
    """The temperature minimising the negative log-likelihood of ``softmax(decision / T)``."""
    best_t, best_nll = 1.0, np.inf
    for t in np.exp(np.linspace(np.log(0.01), np.log(10.0), 200)):
        p = _softmax(decision / t)
        nll = -np.mean(np.log(p[np.arange(len(y_idx)), y_idx] + 1e-12))
        if nll < best_nll:
            best_t, best_nll = float(t), nll
    return best_t


class IntentClassifier:
    """Scikit-learn-shaped: ``fit(texts, y)``, ``predict``, ``predict_proba``, ``classes_``.

    The training-side methods take ``views``: the texts' precomputed
    :class:`~deflect.models.embedders.EncoderViews`. The prediction methods take
    ``encoding``: a :class:`~deflect.models.encoding.QueryEncoding` made by :meth:`encode`
    (through :func:`~deflect.models.encoding.encode_queries` on the serving path). Without
    either, the classifier encodes with its ``embedder``.
    """

    def __init__(self, embedder: Embedder | None = None, params: dict | None = None, *, seed: int = 0) -> None:
        self.embedder = embedder
        self.params = {**DEFAULT_PARAMS, **(params or {})}
        self.seed = seed
        self.classes_: np.ndarray = np.array([])
        self.temperature = 1.0
        self.oos_threshold: float | None = None
        self.oos_label: str | None = None
        self._word: TfidfVectorizer | None = None
        self._char: TfidfVectorizer | None = None
        self._coef: np.ndarray | None = None
        self._intercept: np.ndarray | None = None
        self._train_emb: np.ndarray | None = None
        self._train_y: np.ndarray | None = None
        self._emb32: np.ndarray | None = None
        self._by_class: tuple[np.ndarray, np.ndarray] | None = None
        self._analyzers: tuple | None = None  # the TF-IDF analyzers, built on first use
        # the fine-tuned head (models/intent_head.py) and its weight in the combination
        self.head: OnnxHead | None = None
        self.head_weight = 0.0
        self.head_temperature = 1.0
        self._head_warned = False

    # ---- features -------------------------------------------------------------------
    def _views(self, texts: Sequence[str], views: EncoderViews | None) -> tuple[np.ndarray, np.ndarray]:
        if views is not None:
            emb, mx = views.embedding, views.max_pooled
            if len(emb) != len(texts) or len(mx) != len(texts):
                raise ValueError(f"{len(texts)} texts but views for {len(emb)}")
            return np.asarray(emb, np.float32), np.asarray(mx, np.float32)
        if self.embedder is None:
            raise ValueError("no embedder: pass the texts' views or construct the classifier with an embedder")
        v = self.embedder.encode_views(list(texts), batch_size=ENCODE_BATCH)
        return v.embedding, v.max_pooled

    def encode(
        self, texts: Sequence[str], serving: Embedder | None = None, *, batch_size: int = ENCODE_BATCH
    ) -> QueryEncoding:
        """The encoding this model predicts from, with ``serving``'s views for retrieval.

        * A model with its own (fine-tuned) encoder: the serving views, and its own
          encoder's views in ``model_views``.
        * A model with a head: the serving views and the head's input from the same
          forward pass. When ``serving`` cannot give the trunk states the head was trained
          on, ``head_input`` is None and the linear model decides alone (with a warning).
        * Otherwise: the serving views, which the classifier reads too.

        ``serving`` defaults to the classifier's own embedder; :class:`ValueError` when there
        is neither."""
        texts = list(texts)
        serving = serving if serving is not None else self.embedder
        if serving is None:
            raise ValueError("no embedder to encode with: construct the classifier with one or pass `serving`")
        if self.embedder is not None and self.embedder is not serving:  # its own fine-tuned encoder
            v = serving.encode_views(texts, batch_size=batch_size)
            own = self.embedder.encode_views(texts, batch_size=batch_size)
            return QueryEncoding(v.embedding, v.max_pooled, model_views=EncoderViews(own.embedding, own.max_pooled))
        if self.uses_head and serving.trunk_layer == self.head.trunk_layer:
            v = serving.encode_views(texts, batch_size=batch_size, trunk=True)
            return QueryEncoding(v.embedding, v.max_pooled, head_input=self.head.embed(v.trunk))
        return QueryEncoding.from_views(serving.encode_views(texts, batch_size=batch_size))

    def _warn_no_head(self) -> None:
        if not self._head_warned:
            log.warning(
                "the intent model's head needs the ONNX encoder's trunk output (layer %d); "
                "predicting with the linear model alone",
                self.head.trunk_layer,
            )
            self._head_warned = True

    def _features(self, texts: Sequence[str], views: EncoderViews | None) -> sp.csr_matrix:
        emb, mx = self._views(texts, views)
        p = self.params
        return sp.hstack(
            [
                self._word.transform(texts),
                self._char.transform(texts),
                sp.csr_matrix(emb * p["embedding_weight"]),
                sp.csr_matrix(mx * p["max_pool_weight"]),
            ]
        ).tocsr()

    # ---- sklearn shape --------------------------------------------------------------
    def fit(self, texts: Sequence[str], y: Sequence[str], *, views: EncoderViews | None = None) -> IntentClassifier:
        """Fit on ``texts`` and labels ``y``. Returns ``self``."""
        texts = list(texts)
        y = np.asarray(list(y))
        if len(texts) != len(y):
            raise ValueError(f"{len(texts)} texts but {len(y)} labels")
        p = self.params
        self._word = TfidfVectorizer(ngram_range=tuple(p["word_ngrams"]), sublinear_tf=True)
        self._char = TfidfVectorizer(
            analyzer="char_wb",
            ngram_range=tuple(p["char_ngrams"]),
            sublinear_tf=True,
            min_df=p["char_min_df"] if len(texts) >= 200 else 1,
        )
        self._word.fit(texts)
        self._char.fit(texts)
        self._analyzers = None
        emb, mx = self._views(texts, views)
        X = self._features(texts, EncoderViews(emb, mx))
        svm = LinearSVC(C=p["C"], random_state=self.seed).fit(X, y)
        self.classes_ = svm.classes_
        coef = svm.coef_
        intercept = svm.intercept_
        if len(self.classes_) == 2:  # binary LinearSVC has one row; make it two symmetric ones
            coef = np.vstack([-coef[0], coef[0]])
            intercept = np.array([-intercept[0], intercept[0]])
        self._coef = coef.astype(np.float32)
        self._intercept = intercept.astype(np.float32)
        self._train_emb = emb.astype(np.float16)
        self._emb32 = None
        self._by_class = None
        self._train_y = np.searchsorted(self.classes_, y)
        self.head, self.head_weight = None, 0.0  # a head trained for other classes must not stay
        return self

    def decision_function(
        self, texts: Sequence[str], *, views: EncoderViews | None = None, sims: np.ndarray | None = None
    ) -> np.ndarray:
        """The SVM's decision values plus ``nn_weight`` times each class's nearest-neighbour
        cosine (:meth:`class_similarity`); columns in ``classes_`` order. ``sims``: the rows'
        :meth:`train_similarities`, when the caller has them."""
        texts = list(texts)
        emb, mx = self._views(texts, views)
        dec = self.svm_decision(texts, views=EncoderViews(emb, mx))
        w = self.nn_weight
        return dec + w * self.class_similarity(emb, sims=sims) if w else dec

    @property
    def nn_weight(self) -> float:
        return float(self.params.get("nn_weight") or 0.0)

    def svm_decision(self, texts: Sequence[str], *, views: EncoderViews | None = None) -> np.ndarray:
        """The linear SVM's decision values alone."""
        texts = list(texts)
        if len(texts) <= 4:  # the serving path: skip sklearn's per-call overhead (~1 ms)
            emb, mx = self._views(texts, views)
            return np.stack([self._decision_one(t, emb[i], mx[i]) for i, t in enumerate(texts)])
        X = self._features(texts, views)
        return np.asarray(X @ self._coef.T) + self._intercept

    def _grouped(self) -> tuple[np.ndarray, np.ndarray]:
        """The training embeddings sorted by class, and where each class starts (built once)."""
        if self._by_class is None:
            order = np.argsort(self._train_y, kind="stable")
            starts = np.searchsorted(self._train_y[order], np.arange(len(self.classes_)))
            self._by_class = (np.ascontiguousarray(self._train_emb32()[order]), starts)
        return self._by_class

    def train_similarities(self, emb: np.ndarray) -> np.ndarray:
        """Cosines of each row to every training example, grouped by class (see :meth:`_grouped`).

        Both the nearest-neighbour term and the out-of-scope score read them; computing them
        once per request instead of twice halves that part of the serving path."""
        return np.asarray(emb, np.float32) @ self._grouped()[0].T

    def _similarity_batches(self, emb: np.ndarray, sims: np.ndarray | None, batch: int):
        """``(offset, similarities)`` of ``emb`` in batches (memory stays bounded on large inputs)."""
        if sims is not None:
            yield 0, sims
            return
        for b in range(0, len(emb), batch):
            yield b, self.train_similarities(emb[b : b + batch])

    def class_similarity(self, emb: np.ndarray, *, sims: np.ndarray | None = None, batch: int = 1024) -> np.ndarray:
        """Per row and class: the cosine of the sentence embedding to the class's nearest
        training example (a memory of near-duplicates that the linear model smooths over)."""
        starts = self._grouped()[1]
        out = np.empty((len(emb), len(self.classes_)), dtype=np.float64)
        for b, s in self._similarity_batches(emb, sims, batch):
            out[b : b + len(s)] = np.maximum.reduceat(s, starts, axis=1)
        return out

    def _tfidf_columns(self, vec: TfidfVectorizer, analyzer, text: str) -> tuple[np.ndarray, np.ndarray]:
        vocab = vec.vocabulary_
        counts: dict[int, int] = {}
        for tok in analyzer(text):
            j = vocab.get(tok)
            if j is not None:
                counts[j] = counts.get(j, 0) + 1
        if not counts:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        idx = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        if vec.sublinear_tf:
            tf = 1.0 + np.log(tf)
        v = tf * vec.idf_[idx]
        return idx, v / np.linalg.norm(v)

    def _decision_one(self, text: str, emb: np.ndarray, mx: np.ndarray) -> np.ndarray:
        """The same decision values as the sparse path, for one text, from vocabulary lookups."""
        if self._analyzers is None:
            self._analyzers = (self._word.build_analyzer(), self._char.build_analyzer())
        p = self.params
        n_word = len(self._word.vocabulary_)
        n_char = len(self._char.vocabulary_)
        wi, wv = self._tfidf_columns(self._word, self._analyzers[0], text)
        ci, cv = self._tfidf_columns(self._char, self._analyzers[1], text)
        d = len(emb)
        e0 = n_word + n_char
        coef = self._coef
        out = self._intercept.astype(np.float64).copy()
        if len(wi):
            out += coef[:, wi] @ wv
        if len(ci):
            out += coef[:, n_word + ci] @ cv
        out += coef[:, e0 : e0 + d] @ (np.asarray(emb, np.float64) * p["embedding_weight"])
        out += coef[:, e0 + d : e0 + 2 * d] @ (np.asarray(mx, np.float64) * p["max_pool_weight"])
        return out

    @property
    def uses_head(self) -> bool:
        """True when predictions combine the linear model with the fine-tuned head."""
        return self.head is not None and self.head_weight > 0

    def _resolve(self, texts: list[str], encoding: QueryEncoding | None) -> tuple[EncoderViews, np.ndarray | None]:
        """The classifier's views and the head's input (None: the linear model alone)."""
        if encoding is None:
            encoding = self.encode(texts)
        if len(encoding) != len(texts):
            raise ValueError(f"{len(texts)} texts but an encoding of {len(encoding)}")
        head = encoding.head_input if self.uses_head else None
        if self.uses_head and head is None:
            self._warn_no_head()
        return encoding.classifier_views(), head

    def _log_proba(
        self, texts: list[str], views: EncoderViews, head: np.ndarray | None, sims: np.ndarray | None = None
    ) -> np.ndarray:
        dec = self.decision_function(texts, views=views, sims=sims) / self.temperature
        if head is None:
            return combine(dec, None, 0.0)
        return combine(dec, self.head.logits(head) / self.head_temperature, self.head_weight)

    def log_proba(self, texts: Sequence[str], *, encoding: QueryEncoding | None = None) -> np.ndarray:
        """Calibrated log-probabilities, columns in ``classes_`` order: the temperature-scaled
        linear model, combined with the head when there is one (:func:`combine`)."""
        texts = list(texts)
        views, head = self._resolve(texts, encoding)
        return self._log_proba(texts, views, head)

    def predict_proba(self, texts: Sequence[str], *, encoding: QueryEncoding | None = None) -> np.ndarray:
        """Calibrated class probabilities, columns in ``classes_`` order."""
        return np.exp(self.log_proba(texts, encoding=encoding))

    def predict(self, texts: Sequence[str], *, encoding: QueryEncoding | None = None) -> np.ndarray:
        """The most probable label of each text."""
        return self.classes_[np.argmax(self.log_proba(texts, encoding=encoding), axis=1)]

    # ---- out of scope ---------------------------------------------------------------
    def knn_similarity(
        self,
        emb: np.ndarray,
        labels_idx: np.ndarray,
        *,
        sims: np.ndarray | None = None,
        batch: int = 1024,
    ) -> np.ndarray:
        """Mean cosine to the ``knn_k`` nearest training examples of each row's predicted class."""
        starts, ends = self._class_bounds()
        out = np.empty(len(emb), dtype=np.float32)
        for b, block in self._similarity_batches(emb, sims, batch):
            for r in range(len(block)):
                c = int(labels_idx[b + r])
                out[b + r] = self._mean_top_k(block[r : r + 1, starts[c] : ends[c]])[0]
        return out

    def class_knn(self, emb: np.ndarray, *, batch: int = 1024) -> np.ndarray:
        """Per row and class: the mean cosine to the class's ``knn_k`` nearest training
        examples (what :meth:`knn_similarity` gives for one class, for every class)."""
        starts, ends = self._class_bounds()
        out = np.zeros((len(emb), len(self.classes_)), dtype=np.float32)
        for b, block in self._similarity_batches(emb, None, batch):
            for c in range(len(self.classes_)):
                out[b : b + len(block), c] = self._mean_top_k(block[:, starts[c] : ends[c]])
        return out

    def _class_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Where each class's rows start and end in :meth:`_grouped`'s order."""
        sorted_train, starts = self._grouped()
        return starts, np.r_[starts[1:], len(sorted_train)]

    def _mean_top_k(self, s: np.ndarray) -> np.ndarray:
        """Per row of ``s`` (similarities to one class's examples): the mean of the ``knn_k`` largest."""
        k = int(self.params["knn_k"])
        if s.shape[1] == 0:
            return np.zeros(len(s), dtype=np.float32)
        if s.shape[1] > k:
            s = np.partition(s, s.shape[1] - k, axis=1)[:, -k:]
        return s.mean(axis=1)

    def _train_emb32(self) -> np.ndarray:
        # stored as float16 (half the disk); converted once, not on every request
        if self._emb32 is None:
            self._emb32 = self._train_emb.astype(np.float32)
        return self._emb32

    def in_scope_argmax(self, values: np.ndarray) -> np.ndarray:
        """Per row, the column of the best in-scope class of ``values`` (probabilities or
        decision values): an explicit out-of-scope class, if the model has one, is left out."""
        v = values
        if self.oos_label is not None and self.oos_label in set(self.classes_.tolist()):
            v = np.array(values, dtype=np.float64, copy=True)
            v[:, int(np.searchsorted(self.classes_, self.oos_label))] = -np.inf
        return np.argmax(v, axis=1)

    def oos_scores(
        self, proba: np.ndarray, emb: np.ndarray, *, knn: np.ndarray | None = None, sims: np.ndarray | None = None
    ) -> np.ndarray:
        """In-scope score: ``w * confidence + (1 - w) * kNN cosine``; low means out of scope.

        Both parts look at the best in-scope class (see :meth:`in_scope_argmax`), so texts
        that put their mass on an explicit out-of-scope class score low. ``knn`` passes
        precomputed similarities (out-of-fold ones, from models that did not see the rows).
        """
        idx = self.in_scope_argmax(proba)
        if knn is None:
            knn = self.knn_similarity(emb, idx, sims=sims)
        w = float(self.params["oos_weight"])
        return w * proba[np.arange(len(proba)), idx] + (1 - w) * knn

    def predict_intents(self, texts: Sequence[str], *, encoding: QueryEncoding | None = None) -> list[IntentPrediction]:
        """Labels, confidences and out-of-scope decisions for ``texts``."""
        texts = list(texts)
        views, head = self._resolve(texts, encoding)
        emb = views.embedding
        # a few texts (the serving path): one similarity matrix for both uses; many: in batches
        sims = self.train_similarities(emb) if len(emb) <= 64 else None
        proba = np.exp(self._log_proba(texts, views, head, sims))
        scores = self.oos_scores(proba, emb, sims=sims)
        idx = np.argmax(proba, axis=1)
        out = []
        for i, j in enumerate(idx):
            label = str(self.classes_[j])
            oos = (self.oos_threshold is not None and scores[i] < self.oos_threshold) or label == self.oos_label
            out.append(IntentPrediction(label, float(proba[i, j]), float(scores[i]), bool(oos)))
        return out

    # ---- persistence ----------------------------------------------------------------
    def save(self, directory: Path) -> None:
        """Write the classifier as JSON and ``.npy`` files (no pickle)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        for name, vec in (("word", self._word), ("char", self._char)):
            vocab = {k: int(v) for k, v in vec.vocabulary_.items()}
            (d / f"tfidf_{name}.json").write_text(
                json.dumps(
                    {
                        "vocabulary": vocab,
                        "params": {
                            "ngram_range": list(vec.ngram_range),
                            "analyzer": vec.analyzer,
                            "sublinear_tf": vec.sublinear_tf,
                        },
                    },
                    ensure_ascii=False,
                )
            )
            np.save(d / f"tfidf_{name}_idf.npy", vec.idf_)
        np.save(d / "coef.npy", self._coef)
        np.save(d / "intercept.npy", self._intercept)
        np.save(d / "train_embeddings.npy", self._train_emb)
        np.save(d / "train_labels.npy", self._train_y.astype(np.int32))
        if self.uses_head:
            self.head.copy_to(d / "head")
        (d / "classifier.json").write_text(
            json.dumps(
                {
                    "classes": [str(c) for c in self.classes_],
                    "temperature": self.temperature,
                    "oos_threshold": self.oos_threshold,
                    "oos_label": self.oos_label,
                    "params": self.params,
                    "seed": self.seed,
                    "head_weight": self.head_weight if self.uses_head else 0.0,
                    "head_temperature": self.head_temperature,
                },
                indent=2,
            )
        )

    @classmethod
    def load(cls, directory: Path, embedder: Embedder | None = None) -> IntentClassifier:
        """Read a classifier written by :meth:`save`."""
        d = Path(directory)
        try:
            meta = json.loads((d / "classifier.json").read_text())
            obj = cls(embedder, meta["params"], seed=meta.get("seed", 0))
            obj.classes_ = np.array(meta["classes"])
            obj.temperature = float(meta["temperature"])
            obj.oos_threshold = meta.get("oos_threshold")
            obj.oos_label = meta.get("oos_label")
            for name in ("word", "char"):
                spec = json.loads((d / f"tfidf_{name}.json").read_text())
                vec = TfidfVectorizer(
                    vocabulary=spec["vocabulary"],
                    ngram_range=tuple(spec["params"]["ngram_range"]),
                    analyzer=spec["params"]["analyzer"],
                    sublinear_tf=spec["params"]["sublinear_tf"],
                )
                vec.idf_ = np.load(d / f"tfidf_{name}_idf.npy")
                setattr(obj, f"_{name}", vec)
            obj._coef = np.load(d / "coef.npy")
            obj._intercept = np.load(d / "intercept.npy")
            obj._train_emb = np.load(d / "train_embeddings.npy")
            obj._emb32 = None
            obj._by_class = None
            obj._train_y = np.load(d / "train_labels.npy")
            obj.head_weight = float(meta.get("head_weight") or 0.0)
            obj.head_temperature = float(meta.get("head_temperature") or 1.0)
            if obj.head_weight > 0:
                obj.head = OnnxHead(d / "head")
        except (OSError, ValueError, KeyError) as exc:
            raise BundleError(f"intent model {d} is incomplete or corrupt: {exc}") from exc
        return obj


def choose_oos_threshold(
    in_scope_scores: np.ndarray,
    correct: np.ndarray,
    *,
    max_loss: float = 0.01,
    oos_scores: np.ndarray | None = None,
    oos_caught: np.ndarray | None = None,
) -> float:
    """A threshold on the in-scope score, chosen on validation data.

    Without out-of-scope examples: the highest threshold at which the share of in-scope
    validation texts that are both correct and accepted drops by at most ``max_loss`` from
    its value with no rejection (so it rejects mostly what it would get wrong anyway).
    With out-of-scope examples (``oos_scores``; ``oos_caught`` marks those already predicted
    as the out-of-scope label): the threshold that maximises the share of validation texts
    handled right, i.e. in-scope correct and accepted, or out-of-scope rejected.
    """
    in_scope_scores = np.asarray(in_scope_scores, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    if len(in_scope_scores) != len(correct):
        raise ValueError("scores and correctness differ in length")
    candidates = np.unique(np.concatenate([in_scope_scores, [0.0]]))
    base = correct.mean() if len(correct) else 0.0
    if oos_scores is None or len(oos_scores) == 0:
        best = 0.0
        for t in candidates:
            if (correct & (in_scope_scores >= t)).mean() >= base - max_loss:
                best = max(best, float(t))
        return best
    oos_scores = np.asarray(oos_scores, dtype=np.float64)
    caught = np.zeros(len(oos_scores), bool) if oos_caught is None else np.asarray(oos_caught, dtype=bool)
    best, best_value = 0.0, -1.0
    for t in np.unique(np.concatenate([candidates, oos_scores])):
        value = (correct & (in_scope_scores >= t)).sum() + (caught | (oos_scores < t)).sum()
        if value > best_value:
            best, best_value = float(t), value
    return best


def choose_nn_weight(
    svm_decision: np.ndarray, class_similarity: np.ndarray, y_idx: np.ndarray, weights=NN_WEIGHTS
) -> float:
    """The weight of the nearest-neighbour term that classifies validation predictions best
    (the smallest among ties)."""
    y_idx = np.asarray(y_idx)
    best, best_acc = 0.0, -1.0
    for w in weights:
        acc = float(np.mean(np.argmax(svm_decision + w * class_similarity, axis=1) == y_idx))
        if acc > best_acc + 1e-12:
            best, best_acc = float(w), acc
    return best
