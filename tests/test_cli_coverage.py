"""The command line, flag by flag: every model and data set, the training flags, gradcheck's exit status.

Runs ``jaxnets.cli.main([...])`` in-process on tiny settings (one or two epochs) and reads the run
directory it writes, so these tests hold for any implementation of the same command line.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from jaxnets import broken_grads, cli, data, manual_grads, presets

ROOT = Path(__file__).resolve().parents[1]


def _fashion_dir():
    for d in (os.environ.get("JAXNETS_DATA"), ROOT.parent / "shared" / "data", ROOT.parents[1] / "shared" / "data"):
        if d and (Path(d) / "fashion-mnist").is_dir():
            return str(d)
    return None


def _train(tmp_path, *args):
    out = tmp_path / "run"
    status = cli.main(["train", *map(str, args), "--out", str(out), "--quiet"])
    metrics = json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").exists() else None
    config = json.loads((out / "config.json").read_text()) if (out / "config.json").exists() else None
    return status, metrics, config


MODEL_RUNS = {
    "linear-svm": ["--epochs", "1"],
    "linear-softmax": ["--epochs", "1"],
    "two-layer": ["--epochs", "1", "--hidden", "16"],
    "fc": ["--epochs", "1", "--hidden", "16"],
    "digits-cnn": ["--epochs", "2", "--data", "digits-01"],
    "three-layer-convnet": ["--epochs", "1", "--channels", "4", "--hidden", "8"],
    "convnet": ["--epochs", "1", "--channels", "4", "--hidden", "8"],
}


@pytest.mark.parametrize("model", presets.names())
def test_every_model_trains_through_the_command(tmp_path, model):
    status, metrics, config = _train(tmp_path, "--model", model, *MODEL_RUNS[model])
    assert status == 0
    assert config["resolved"]["model"] == model if "resolved" in config else model in json.dumps(config)
    assert 0 <= metrics["test_accuracy"] <= 1 and np.isfinite(metrics["history"]["loss"]).all()
    assert len(metrics["history"]["val_acc"]) == int(MODEL_RUNS[model][1])


@pytest.mark.slow  # long on 2 cores: runs in the slow tier (pytest -m slow)
def test_manual_grads_train_like_autodiff(tmp_path):
    args = ["--model", "fc", "--hidden", "16", "--epochs", "2", "--normalization", "batchnorm"]
    _, auto, _ = _train(tmp_path / "a", *args, "--grads", "auto")
    _, manual, config = _train(tmp_path / "m", *args, "--grads", "manual")
    assert "manual" in json.dumps(config)
    np.testing.assert_allclose(manual["history"]["loss"], auto["history"]["loss"], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("normalization", ["none", "batchnorm", "layernorm"])
def test_normalization_flag_changes_the_model(tmp_path, normalization):
    status, metrics, config = _train(
        tmp_path, "--model", "fc", "--hidden", "16", "--epochs", "1", "--normalization", normalization
    )
    assert status == 0 and f'"{normalization}"' in json.dumps(config)
    ckpt = np.load(tmp_path / "run" / "checkpoint.npz")
    names = " ".join(ckpt.files)
    # batch/layer norm add a scale (gamma) per hidden layer; none adds nothing
    assert ("gamma" in names) == (normalization != "none"), names


def test_filter_size_flag_sets_the_conv_kernel(tmp_path):
    status, _, _ = _train(
        tmp_path, "--model", "three-layer-convnet", "--channels", "2", "--hidden", "8", "--epochs", "1",
        "--filter-size", "5",
    )  # fmt: skip
    assert status == 0
    ckpt = np.load(tmp_path / "run" / "checkpoint.npz")
    kernels = [ckpt[k] for k in ckpt.files if k == "params['W1']"]
    assert kernels and all(k.shape[-2:] == (5, 5) for k in kernels)


def test_patience_stops_early(tmp_path):
    # lr so small nothing improves after the first epoch: stopped after 1 + patience epochs
    status, metrics, _ = _train(
        tmp_path, "--model", "linear-softmax", "--epochs", "20", "--lr", "1e-9", "--patience", "2"
    )  # fmt: skip
    assert status == 0
    assert len(metrics["history"]["val_acc"]) < 20 and "early stopping" in metrics["stopped"]


@pytest.mark.slow  # long on 2 cores: runs in the slow tier (pytest -m slow)
def test_with_replacement_and_lr_decay_change_the_run(tmp_path):
    base = ["--model", "linear-softmax", "--epochs", "2", "--seed", "1"]
    _, plain, _ = _train(tmp_path / "p", *base)
    _, repl, _ = _train(tmp_path / "r", *base, "--with-replacement")
    _, decay, _ = _train(tmp_path / "d", *base, "--lr-decay", "0.5")
    assert plain["history"]["loss"] != repl["history"]["loss"]  # other minibatches
    # the decay takes effect after the first epoch: epoch 1 identical, epoch 2 not
    n = len(plain["history"]["loss"]) // 2
    assert plain["history"]["loss"][:n] == decay["history"]["loss"][:n]
    assert plain["history"]["loss"][n:] != decay["history"]["loss"][n:]


@pytest.mark.slow  # long on 2 cores: runs in the slow tier (pytest -m slow)
def test_augment_flag_changes_training(tmp_path):
    base = ["--model", "convnet", "--channels", "4", "--hidden", "8", "--epochs", "1"]
    _, plain, _ = _train(tmp_path / "p", *base)
    status, aug, config = _train(tmp_path / "a", *base, "--augment")
    assert status == 0 and '"augment": true' in json.dumps(config)
    assert plain["history"]["loss"] != aug["history"]["loss"]


@pytest.mark.slow  # long on 2 cores: runs in the slow tier (pytest -m slow)
def test_cifar10_through_the_command(tmp_path):
    # the command takes CIFAR-10's standard split (49000 / 1000 / 1000), so the synthetic folder is full size
    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in [(f"data_batch_{i}", 10000) for i in range(1, 6)] + [("test_batch", 1000)]:
        data.write_cifar10_batch(folder / name, rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 10, n))
    status, metrics, config = _train(
        tmp_path, "--model", "linear-softmax", "--epochs", "1", "--batch-size", "1000",
        "--data", "cifar10", "--data-dir", tmp_path / "data",
    )  # fmt: skip
    assert status == 0 and '"cifar10"' in json.dumps(config)
    assert 0 <= metrics["test_accuracy"] <= 1 and np.isfinite(metrics["history"]["loss"]).all()


def test_fashion_mnist_through_the_command(tmp_path):
    data_dir = _fashion_dir()
    if data_dir is None:
        pytest.skip("Fashion-MNIST not found in $JAXNETS_DATA or ../shared/data")
    status, metrics, _ = _train(
        tmp_path, "--model", "linear-softmax", "--epochs", "1", "--data", "fashion-mnist", "--data-dir", data_dir
    )  # fmt: skip
    assert status == 0 and metrics["test_accuracy"] > 0.6


@pytest.mark.slow  # long on 2 cores: runs in the slow tier (pytest -m slow)
def test_gradcheck_of_every_layer_passes(capsys):
    assert cli.main(["gradcheck", "--trials", "1"]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out and "max_pool2d" in out and "softmax_loss" in out


def test_gradcheck_exits_1_when_a_backward_is_wrong(capsys, monkeypatch):
    # the documents' broken max-pool backward in place of the true one
    monkeypatch.setattr(manual_grads, "max_pool2d", broken_grads.max_pool2d)
    assert cli.main(["gradcheck", "--trials", "1"]) == 1
    out = capsys.readouterr().out
    failed = [line.split()[0] for line in out.splitlines() if line.endswith("FAIL")]
    assert failed == ["max_pool2d"], out
    assert "over: max_pool2d" in out
