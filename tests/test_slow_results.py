"""The README's long-running claims, run for real (``python -m pytest -q -m slow``).

Every Results row on each of its seeds reaches its target (Fashion-MNIST rows only where the
data is found; a row in ``MISSED`` runs as an expected failure with its measured figures), the
broken-backprop table's claims hold, and the default ``jaxnets train`` run reaches the accuracy
the README states.
"""

import importlib.util
import json
import os
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxnets import cli

ROOT = Path(__file__).resolve().parents[1]
SEEDS = (0, 1, 2)


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


results = _load("results")
broken_backprop = _load("broken_backprop")


def _fashion_dir():
    for d in (os.environ.get("JAXNETS_DATA"), ROOT.parent / "shared" / "data", ROOT.parents[1] / "shared" / "data"):
        if d and (Path(d) / "fashion-mnist").is_dir():
            return str(d)
    return None


#: Rows that miss their target, with what was measured: they still run, and report.
MISSED = {
    "fashion-convnet": "missed: seeds 0, 1, 2 gave 0.9269, 0.9299, 0.9331 test accuracy against 0.935",
}
ROW_SEEDS = [
    pytest.param(row, seed, id=f"{row}-seed{seed}", marks=[pytest.mark.xfail(reason=MISSED[row], strict=False)])
    if row in MISSED
    else pytest.param(row, seed, id=f"{row}-seed{seed}")
    for row in results.ROWS
    for seed in SEEDS
]


@pytest.mark.slow
@pytest.mark.parametrize("row, seed", ROW_SEEDS)
def test_results_row_meets_its_target(row, seed):
    data_dir = None
    if results.ROWS[row]["data"] == "fashion-mnist":
        data_dir = _fashion_dir()
        if data_dir is None:
            pytest.skip("Fashion-MNIST not found in $JAXNETS_DATA or ../shared/data")
    r = results.run_row(row, data_dir=data_dir, seed=seed, verbose=False)
    if os.environ.get("JAXNETS_RESULTS_JSON"):  # the run that regenerates docs/results.json
        results.merge_results(os.environ["JAXNETS_RESULTS_JSON"], [r])
    assert r["test_acc"] >= results.TARGETS[row], r


def test_every_row_has_a_target():
    assert set(results.TARGETS) == set(results.ROWS)


@pytest.mark.slow
def test_broken_backprop_table_claims(tmp_path):
    """True and broken backward both learn 0 vs 1; the true one reaches the lower final cost at every size."""
    rows = broken_backprop.main(["--out", str(tmp_path / "curves.png")])
    assert len(rows) == len(broken_backprop.HIDDEN_SIZES)
    for row in rows:
        assert row["true"]["final_cost"] < row["broken"]["final_cost"], row["hidden_dims"]
        assert row["true"]["test_acc"] >= 0.98 and row["broken"]["test_acc"] >= 0.98, row["hidden_dims"]
        assert np.all(np.isfinite(row["true"]["costs"])) and np.all(np.isfinite(row["broken"]["costs"]))
    assert (tmp_path / "curves.png").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_default_run_accuracy(tmp_path, seed, capsys):
    """``jaxnets train`` with no flags: README states 0.9749, 0.9777, 0.9861 (>= 0.97 on each seed)."""
    out = tmp_path / "run"
    assert cli.main(["train", "--seed", str(seed), "--out", str(out), "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.97, metrics["test_accuracy"]


tune = _load("tune_fashion_convnet")


def test_the_fashion_convnet_row_is_the_candidate_chosen_on_validation():
    """The row trains what the tuning record ranks first by mean best validation accuracy."""
    with open(ROOT / "docs" / "tune_fashion_convnet.jsonl") as f:
        record = [json.loads(line) for line in f if line.strip()]
    ranking = tune.summary(record).splitlines()
    winner = ranking[2].split("|")[1].strip()
    _, config = tune.build(winner)
    assert results.ROWS["fashion-convnet"]["config"] == config
    assert all("test" not in key for r in record for key in r)  # the choice never saw the test set


def test_every_tuning_candidate_builds():
    for name in tune.CANDIDATES:
        model, config = tune.build(name)
        params, _ = model.init(jax.random.key(0), (1, 28, 28))
        assert params["W1"].shape[:2] == (32, 1) and config.batch_size == 100


def test_the_readme_results_table_is_the_one_generated_from_the_json():
    """The README shows what ``results.table`` makes of docs/results.json: every row, seeds 0-2."""
    with open(ROOT / "docs" / "results.json") as f:
        doc = json.load(f)
    assert set(doc["rows"]) == set(results.ROWS)
    assert all([r["seed"] for r in runs] == list(SEEDS) for runs in doc["rows"].values())
    assert results.table(doc) in (ROOT / "README.md").read_text()
