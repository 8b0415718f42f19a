"""One typed query encoding: what the encoders compute for a query, made once per request.

:func:`encode_queries` is the only way the server, ``deflect eval``, ``deflect simulate`` and
the benchmarks turn query text into vectors. It asks the current intent model how it wants
its features (``IntentClassifier.encode``): the serving encoder's two views, the views of the
model's own fine-tuned encoder, or the serving views plus the head's input from the same
forward pass. The engine never needs to know which.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from deflect.models.embedders.protocol import Embedder, EncoderViews

if TYPE_CHECKING:
    from deflect.models.registry import LoadedModel

# texts are encoded one at a time, as serving encodes a query: the int8 encoder quantizes
# activations with a scale per batch, so batched features differ slightly from served ones
# (BANKING77 test accuracy 0.9471 batched, 0.9448 served, for a model trained on batched ones)
ENCODE_BATCH = 1


@dataclass(frozen=True)
class QueryEncoding:
    """The encoding of ``n`` queries (one, on the serving path).

    Attributes:
        embedding: ``(n, d)`` float32 unit rows: the serving encoder's sentence embedding,
            what the index is searched with.
        max_pooled: ``(n, d)`` float32 unit rows: the serving encoder's max-pooled view.
        model_views: the intent model's own encoder's views, for a model with a fine-tuned
            encoder; None when the model reads the serving encoder's views.
        head_input: ``(n, h)`` float32: the pooled output of the model's fine-tuned head,
            computed from the same forward pass; None when the model has no head (or the
            serving encoder cannot give the trunk states it reads).
        model_version: the intent-model version this encoding was made for; None when it
            was made without a model. A model given an encoding made for another version
            encodes the text again (see ``LoadedModel.predict``).
    """

    embedding: np.ndarray
    max_pooled: np.ndarray
    model_views: EncoderViews | None = None
    head_input: np.ndarray | None = None
    model_version: str | None = None

    def __len__(self) -> int:
        return len(self.embedding)

    @classmethod
    def from_views(cls, views: EncoderViews, *, head_input: np.ndarray | None = None) -> QueryEncoding:
        """An encoding from an encoder's views (the classifier reads them directly)."""
        return cls(views.embedding, views.max_pooled, head_input=head_input)

    def classifier_views(self) -> EncoderViews:
        """The two views the intent classifier's features are built from."""
        if self.model_views is not None:
            return self.model_views
        return EncoderViews(self.embedding, self.max_pooled)

    def take(self, rows: Sequence[int] | np.ndarray) -> QueryEncoding:
        """The encoding of the given rows, in that order."""
        idx = np.asarray(rows, dtype=np.int64)
        return replace(
            self,
            embedding=self.embedding[idx],
            max_pooled=self.max_pooled[idx],
            model_views=None if self.model_views is None else self.model_views.take(idx),
            head_input=None if self.head_input is None else self.head_input[idx],
        )

    def row(self, i: int) -> QueryEncoding:
        """The encoding of query ``i`` alone."""
        return self.take([i])


def encode_queries(
    embedder: Embedder,
    texts: Sequence[str],
    model: LoadedModel | None = None,
    *,
    batch_size: int = ENCODE_BATCH,
) -> QueryEncoding:
    """Everything the engine and the intent model need for ``texts``, in one encoder pass
    per encoder (the serving ``embedder``, and a fine-tuned model's own encoder).

    ``model``: the current intent model, or None (the serving views alone). ``batch_size``:
    1 (the default) encodes as the server does; larger batches are faster in bulk, at the
    cost of slightly different int8 activations.
    """
    texts = list(texts)
    if model is None:
        return QueryEncoding.from_views(embedder.encode_views(texts, batch_size=batch_size))
    enc = model.classifier.encode(texts, embedder, batch_size=batch_size)
    return replace(enc, model_version=model.version)
