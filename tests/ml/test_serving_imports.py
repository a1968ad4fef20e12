"""Serving needs no scikit-learn: scoring through the model store imports only onnxruntime
and numpy (checked in a clean interpreter)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ml.train import TrainedModel

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys
import numpy as np
import ml.scorer, ml.serving, ml.registry, ml.features
import schema.app
from db.engine import make_engine
from ml.serving import store_for
store = store_for(make_engine(sys.argv[1]))
scorer = store.get("order_value")
row = {f.name: np.array([[np.nan]] if f.kind == "numeric" else [["web"]])
       for f in scorer.spec.features}
print(float(scorer.score(row).values[0]))
heavy = sorted(m for m in sys.modules
               if m.split(".")[0] in {"sklearn", "skl2onnx", "pandas", "scipy"})
print("HEAVY", heavy)
"""


def test_scoring_imports_neither_sklearn_nor_skl2onnx(
    ml_url: str, trained: dict[str, TrainedModel]
) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, ml_url],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    value_line, heavy_line = out.stdout.strip().splitlines()[-2:]
    assert float(value_line) > 0
    assert heavy_line == "HEAVY []"
