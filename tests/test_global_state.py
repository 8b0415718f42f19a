"""No hidden global state: importing deflect, or calling it, leaves the process's logging,
environment and random generators as they were."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

SNAPSHOT = """
import json, logging, os, sys
import sklearn  # sets KMP_* variables for its OpenMP runtime at import: a dependency's doing, not ours
def snap():
    root = logging.getLogger()
    return {"env": dict(os.environ), "root_level": root.level, "root_handlers": len(root.handlers),
            "bm25s": logging.getLogger("bm25s").level}
before = snap()
import pkgutil, importlib, deflect
for m in pkgutil.walk_packages(deflect.__path__, "deflect."):
    if m.name.startswith("deflect.cli") or m.name.endswith("__main__"):
        continue
    importlib.import_module(m.name)
import deflect.models, deflect.eval, deflect.kb_ingest
for pkg in (deflect.models, deflect.eval, deflect.kb_ingest):
    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        importlib.import_module(m.name)
print(json.dumps({"before": before, "after": snap()}))
"""


def test_importing_every_module_changes_no_environment_or_logging():
    env = {"PATH": "/usr/bin:/bin", "HOME": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", SNAPSHOT], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["after"] == out["before"]
    assert "HF_HUB_OFFLINE" not in out["after"]["env"]


def _tiny_graph(path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32), "w")
    node = helper.make_node("MatMul", ["x", "w"], ["y"])
    graph = helper.make_graph(
        [node],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [w],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_quantizing_leaves_logging_as_it_was(tmp_path, caplog):
    from deflect.models.embedders import quantize_int8

    root = logging.getLogger()
    level, handlers, filters = root.level, list(root.handlers), list(root.filters)
    _tiny_graph(tmp_path / "m.onnx")
    quantize_int8(tmp_path / "m.onnx", tmp_path / "m.int8.onnx")
    assert (tmp_path / "m.int8.onnx").exists()
    assert (root.level, root.handlers, root.filters) == (level, handlers, filters)
    with caplog.at_level(logging.WARNING):  # a later warning still reaches the handlers
        logging.getLogger("deflect.intent").warning("still heard")
        logging.warning("root still heard")
    assert "still heard" in caplog.text and "root still heard" in caplog.text


@pytest.mark.slow
def test_training_the_head_leaves_torchs_generator_as_it_was(real_embedder, tmp_path):
    import torch

    from deflect.models.intent_head import train_head

    states = real_embedder.encode_views(["one text", "another text", "a third", "and a fourth"], trunk=True).trunk
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    train_head(
        real_embedder.model_dir, real_embedder.trunk_layer, states, np.array([0, 1, 0, 1]), 2, tmp_path, epochs=1
    )
    assert torch.equal(torch.get_rng_state(), before)


CLI_THEN_BM25S = """
from deflect.cli.main import _main
_main(verbose=False)  # what every `deflect ...` command runs first
import logging, bm25s  # imported lazily, after the command configured logging; sets its logger to DEBUG
bm25s.BM25().index(bm25s.tokenize(["reset my password", "download an invoice"], show_progress=False),
                   show_progress=False)
logging.getLogger("bm25s").info("an index build")
logging.getLogger("bm25s").warning("a real bm25s warning")
logging.getLogger("deflect.engine").warning("a deflect warning")
"""


def test_the_command_line_keeps_bm25s_quiet_but_not_its_warnings():
    done = subprocess.run([sys.executable, "-c", CLI_THEN_BM25S], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "an index build" not in done.stderr and "DEBUG" not in done.stderr, done.stderr
    assert "a real bm25s warning" in done.stderr and "a deflect warning" in done.stderr
