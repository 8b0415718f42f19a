"""The distribution installs under one namespace: no generic top-level packages in a user's
site-packages (``models``, ``eval``, ``kb_ingest``), and every package of the source tree is in it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"deflect": "deflect", "models": "deflect.models", "eval": "deflect.eval", "kb_ingest": "deflect.kb_ingest"}


def _source_packages() -> set[str]:
    """Every folder with an ``__init__.py`` under the four top-level folders, by its installed name."""
    out = set()
    for folder, name in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            out.add(".".join((name, *rel)))
    return out


def test_every_source_package_is_listed_under_the_deflect_namespace():
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(conf["packages"])
    assert listed == _source_packages()
    assert all(p == "deflect" or p.startswith("deflect.") for p in listed)
    assert conf["package-dir"] == {"deflect": "deflect", **{v: k for k, v in FOLDERS.items() if k != "deflect"}}


@pytest.mark.slow
def test_the_wheel_has_one_top_level_package_and_imports_from_site_packages(tmp_path):
    """Build the wheel as pip would, install it into a fresh target and import from there."""
    out = tmp_path / "wheel"
    made_build_dir = not (ROOT / "build").exists()
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    if made_build_dir:  # setuptools builds in the source tree; leave it as it was
        shutil.rmtree(ROOT / "build", ignore_errors=True)
    (wheel,) = out.glob("deflect-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"deflect"}
    assert "deflect/models/intent.py" in names and "deflect/eval/offline.py" in names
    assert "deflect/static/deflect-widget.js" in names
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    code = (
        "import deflect.models.intent, deflect.eval.offline, deflect.kb_ingest.pipeline, deflect.cli.main;"
        "print(deflect.models.intent.__file__)"
    )
    # from a directory without the source tree, the installed copy first on the path
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(str(target))
    assert not (target / "models").exists() and not (target / "eval").exists()
