"""The ``jaxnets`` command, driven as a user would: in subprocesses, on tiny runs on digits."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxnets import checkpoints, cli, models, train

# A small fc net (batch norm + dropout 0.2 by default): a few seconds per run.
TINY = ["--model", "fc", "--hidden", "32", "--epochs", "2", "--batch-size", "50", "--lr", "0.01", "--seed", "3"]


@pytest.fixture(scope="module", autouse=True)
def compilation_cache(tmp_path_factory):
    """Share compiled programs between this file's subprocesses (most runs compile the same
    epoch): a persistent XLA cache in a temporary directory, for the child processes only."""
    env = {
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path_factory.mktemp("xla-cache")),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        yield


def jaxnets(*args, cwd=None, timeout=300):
    """Run ``python -m jaxnets ARGS`` and return the CompletedProcess (text output)."""
    return subprocess.run(
        [sys.executable, "-m", "jaxnets", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def snapshot(directory: Path) -> dict:
    """Every file under ``directory`` with its bytes."""
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def read_arrays(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files if name != "__meta__"}


def without_times(obj):
    """A metrics/history dict minus its wall-clock entries."""
    if isinstance(obj, dict):
        return {k: without_times(v) for k, v in obj.items() if k not in ("wall_time_s", "train_time_s", "epoch_time")}
    return obj


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One finished tiny run, not quiet (module-wide, read-only for the tests that use it)."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    result = jaxnets("train", *TINY, "--out", out)
    assert result.returncode == 0, result.stderr
    return out, result


def test_train_writes_the_run_files(run):
    out, result = run
    assert {"config.json", "metrics.json", "curves.png", "weights.png", "checkpoint.npz"} <= set(os.listdir(out))
    metrics = json.loads((out / "metrics.json").read_text())
    assert result.stdout.splitlines()[-1] == f"test accuracy: {metrics['test_accuracy']:.6f}"
    epoch_lines = [line for line in result.stdout.splitlines() if line.startswith("epoch")]
    assert (
        len(epoch_lines) == 2
        and "loss" in epoch_lines[0]
        and "train acc" in epoch_lines[0]
        and "val acc" in epoch_lines[0]
    )
    assert "50/50" in result.stderr  # the tqdm bar, advanced by whole epochs (25 steps each)
    assert 0.6 < metrics["test_accuracy"] <= 1 and 0.6 < metrics["val_accuracy"] <= 1
    assert metrics["val_accuracy"] == max(metrics["history"]["val_acc"])
    assert metrics["epochs_completed"] == 2 and metrics["stopped"] is None
    assert len(metrics["history"]["loss"]) == 2 * (1258 // 50) and len(metrics["history"]["train_acc"]) == 2
    assert metrics["device"] == str(jax.devices()[0]) and metrics["wall_time_s"] > 0
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["model"] == "fc" and config["config"]["hidden"] == [32]
    assert config["config"]["dropout"] == 0.2 and config["config"]["optimizer"] == "adam"  # resolved defaults
    assert config["given"]["epochs"] == 2 and "dropout" not in config["given"]
    assert checkpoints.read_checkpoint_meta(out / "checkpoint.npz")["epoch"] == 2
    for png in ("curves.png", "weights.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_same_seed_gives_identical_runs(run, tmp_path):
    out, _ = run
    again = tmp_path / "again"
    result = jaxnets("train", *TINY, "--out", again, "--quiet")
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"test accuracy: \d\.\d{6}\n", result.stdout) and result.stderr == ""  # --quiet
    a, b = read_arrays(out / "checkpoint.npz"), read_arrays(again / "checkpoint.npz")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    metrics_a, metrics_b = (json.loads((d / "metrics.json").read_text()) for d in (out, again))
    assert without_times(metrics_a) == without_times(metrics_b)


def test_resume_continues_the_history(run, tmp_path):
    out, _ = run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    result = jaxnets("train", "--resume", "--out", copy, "--epochs", "4", "--quiet")
    assert result.returncode == 0, result.stderr
    before = json.loads((out / "metrics.json").read_text())["history"]
    after = json.loads((copy / "metrics.json").read_text())
    assert after["epochs_completed"] == 4 and len(after["history"]["val_acc"]) == 4
    assert after["history"]["val_acc"][:2] == before["val_acc"]
    assert after["history"]["loss"][: len(before["loss"])] == before["loss"]
    config = json.loads((copy / "config.json").read_text())
    assert config["config"]["epochs"] == 4 and config["resumed"][0]["from_epoch"] == 2


def test_kill_and_resume_replays_the_uninterrupted_run(tmp_path):
    args = [a for a in TINY if a not in ("--epochs", "2")] + ["--quiet"]  # TINY's compiled epoch: cached
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "jaxnets", "train", *args, "--epochs", "100000", "--out", str(killed)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    ckpt, epoch = killed / "checkpoint.npz", 0
    try:
        deadline = time.monotonic() + 240
        while epoch < 2:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint at epoch 2 in time"
            if ckpt.exists():
                epoch = checkpoints.read_checkpoint_meta(ckpt)["epoch"]  # atomic writes: never torn
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    stopped_at = checkpoints.read_checkpoint_meta(ckpt)["epoch"]
    assert stopped_at >= 2
    final = stopped_at + 2
    resumed = jaxnets("train", "--resume", "--out", killed, "--epochs", final)
    assert resumed.returncode == 0, resumed.stderr
    straight = tmp_path / "straight"
    assert jaxnets("train", *args, "--epochs", final, "--out", straight).returncode == 0
    a, b = read_arrays(killed / "checkpoint.npz"), read_arrays(straight / "checkpoint.npz")
    assert a.keys() == b.keys()
    for name in a:
        assert np.array_equal(a[name], b[name]), name
    metrics_a, metrics_b = (json.loads((d / "metrics.json").read_text()) for d in (killed, straight))
    assert without_times(metrics_a) == without_times(metrics_b)


def test_evaluate_reports_the_runs_test_accuracy(run, tmp_path):
    out, _ = run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    result = jaxnets("evaluate", "--checkpoint", copy)  # a run directory (or its checkpoint.npz)
    assert result.returncode == 0, result.stderr
    accuracy = json.loads((copy / "metrics.json").read_text())["test_accuracy"]
    assert f"test accuracy: {accuracy:.6f}" in result.stdout
    assert "confusion matrix" in result.stdout
    rows = [line.split() for line in result.stdout.splitlines() if re.match(r"^\s+\d+(\s+\d+){10}$", line)]
    assert len(rows) == 10 and sum(int(n) for row in rows for n in row[1:]) == 359
    assert (copy / "confusion.png").read_bytes()[:4] == b"\x89PNG"


def test_sweep_ranks_the_grid_and_writes_its_files(tmp_path):
    out = tmp_path / "sweep"
    result = jaxnets(
        "sweep", "--model", "linear-softmax", "--lr", "log:0.01:1:3", "--reg", "0,1e-3", "--epochs", "2", "--out", out
    )
    assert result.returncode == 0, result.stderr
    pattern = r"^lr (\S+) reg (\S+) train accuracy: (\S+) val accuracy: (\S+)$"
    rows = [tuple(map(float, m.groups())) for line in result.stdout.splitlines() if (m := re.match(pattern, line))]
    assert [(lr, reg) for lr, reg, *_ in rows] == [(lr, reg) for lr in (0.01, 0.1, 1.0) for reg in (0.0, 1e-3)]
    assert re.search(
        r"^lr 1\.000000e-02 reg 0\.000000e\+00 train accuracy: \d\.\d{6} val accuracy: \d\.\d{6}$", result.stdout, re.M
    )
    record = json.loads((out / "sweep.json").read_text())
    assert len(record["results"]) == 6
    best = max(record["results"], key=lambda r: r["val_accuracy"])
    assert record["best"]["val_accuracy"] == pytest.approx(best["val_accuracy"])
    assert f"(lr {record['best']['lr']:e} reg {record['best']['reg']:e})" in result.stdout
    assert f"test accuracy of the best configuration: {record['best']['test_accuracy']:f}" in result.stdout
    assert 0.5 < record["best"]["test_accuracy"] <= 1
    assert (out / "sweep.png").read_bytes()[:4] == b"\x89PNG"


def test_gradcheck_of_a_whole_model_passes():
    result = jaxnets("gradcheck", "--model", "two-layer")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if "max relative error:" in line}
    assert set(lines) == {"W1", "b1", "W2", "b2"}
    autodiff, numeric = map(float, lines["W1"].split(":")[1].split())
    assert autodiff < 1e-10 and numeric < 1e-7


def test_divergence_is_reported_and_keeps_a_loadable_checkpoint(tmp_path):
    out = tmp_path / "diverged"
    args = [a if a != "0.01" else "1e30" for a in TINY]  # the lr is an argument of the compiled epoch: cached
    result = jaxnets("train", *args, "--out", out, "--quiet")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert re.search(r"training stopped: diverged: .*epoch 1, step \d+ .*try a lower learning rate", result.stderr)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["stopped"].startswith("diverged") and metrics["epochs_completed"] == 0
    assert result.stdout.strip().startswith("test accuracy: ")
    # the last good checkpoint (here the initial one, written before the first epoch) is intact
    assert checkpoints.read_checkpoint_meta(out / "checkpoint.npz")["epoch"] == 0
    assert all(np.isfinite(a).all() for a in read_arrays(out / "checkpoint.npz").values())


# -------------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def other_checkpoint(tmp_path_factory):
    """A valid checkpoint of another model (linear-softmax), written in-process."""
    path = tmp_path_factory.mktemp("other") / "checkpoint.npz"
    ts = train.init_train_state(models.linear_classifier(10), jax.random.key(0), (1, 8, 8), train.TrainConfig(), 6)
    return checkpoints.save_checkpoint(
        path, ts, model_name="linear-softmax", model_config={"num_classes": 10, "loss": "softmax"}
    )


# (arguments, the error it must give). Marked "subprocess" ones run as real processes (the data
# has to be loaded, or to show the real process prints one line); the others fail before any data
# or compilation, so they run in-process through ``cli.main`` (the same code, milliseconds each).
BAD = [
    (
        ["train", "--model", "resnet"],
        r"argument --model: invalid choice: 'resnet' \(choose from .*linear-svm",
        "subprocess",
    ),
    (["train", "--data", "svhn"], r"argument --data: invalid choice: 'svhn' \(choose from .*digits", ""),
    (["train", "--epochs", "0"], r"argument --epochs: must be a positive integer, got '0'", ""),
    (["train", "--epochs", "-2"], r"argument --epochs: must be a positive integer, got '-2'", ""),
    (["train", "--batch-size", "0"], r"argument --batch-size: must be a positive integer, got '0'", ""),
    (["train", "--lr", "-0.1"], r"argument --lr: must be a positive number, got '-0.1'", ""),
    (["train", "--lr", "0"], r"argument --lr: must be a positive number, got '0'", ""),
    (["train", "--optimizer", "adagrad"], r"argument --optimizer: invalid choice: 'adagrad' \(choose from .*adam", ""),
    (
        ["train", "--batch-size", "5000", "--out", "{new}"],
        r"--batch-size 5000 is larger than the training set \(1258 "
        r"examples of digits\); use --batch-size <= 1258",
        "subprocess",
    ),
    (["train", "--data", "fashion-mnist", "--data-dir", "{missing}"], r"--data-dir .*missing: no such directory", ""),
    (
        ["train", "--model", "digits-cnn"],
        r"digits-cnn is the documents' binary 0-vs-1 net .*use it with --data digits-01",
        "",
    ),
    (["train", "--channels", "8"], r"--channels does not apply to --model fc", ""),
    (["train", "--devices", "64"], r"--devices 64: only \d+ device\(s\) available", ""),
    (
        ["train", "--out", "{run}"],
        r"--out .*tiny already holds a run \(config.json\); pass --resume to continue it",
        "",
    ),
    (
        ["train", "--resume", "--out", "{run}", "--lr", "0.5"],
        r"--lr 0.5 conflicts with the saved run's lr=0.01 in "
        r".*config.json; drop it to resume",
        "",
    ),
    (["train", "--resume", "--out", "{new}"], r"--resume: .* holds no run \(no config.json\)", ""),
    (["train", "--resume", "--out", "{run}", "--epochs", "2"], r"already has 2 epochs; pass --epochs N with N > 2", ""),
    (
        ["evaluate", "--checkpoint", "{truncated}/checkpoint.npz"],
        r"checkpoint.npz: not a readable jaxnets checkpoint .*truncated or corrupt",
        "subprocess",
    ),
    (
        ["train", "--resume", "--out", "{truncated}", "--epochs", "3"],
        r"not a readable jaxnets checkpoint .*truncated or corrupt",
        "",
    ),
    (
        ["evaluate", "--checkpoint", "{other}"],
        r"checkpoint.npz: checkpoint is from model 'linear-softmax', not 'fc'",
        "",
    ),
    (
        ["train", "--resume", "--out", "{other}", "--epochs", "3"],
        r"checkpoint is from model 'linear-softmax', not 'fc'",
        "subprocess",
    ),
    (["evaluate", "--checkpoint", "{missing}"], r"--checkpoint .*missing: no such file", ""),
    (["sweep", "--lr", "log:0:1:3"], r"--lr: expected a comma-separated list like 1e-3,1e-2 or log:START:STOP:N", ""),
    (["gradcheck", "--model", "resnet"], r"argument --model: invalid choice: 'resnet'", ""),
    ([], r"the following arguments are required: ", ""),
]


@pytest.mark.parametrize("args, message, how", BAD, ids=[" ".join(a)[:60] or "no-command" for a, _, _ in BAD])
def test_bad_input_is_one_line_exit_2_and_touches_nothing(
    args, message, how, run, other_checkpoint, tmp_path, capsys, monkeypatch
):
    out, _ = run
    broken = {}
    for name, checkpoint in (("truncated", None), ("other", other_checkpoint)):
        directory = tmp_path / name
        shutil.copytree(out, directory)
        if checkpoint is None:
            data = (directory / "checkpoint.npz").read_bytes()
            (directory / "checkpoint.npz").write_bytes(data[: len(data) // 3])
        else:
            shutil.copy(checkpoint, directory / "checkpoint.npz")
        broken[name] = directory
    places = {"run": out, "new": tmp_path / "new", "missing": tmp_path / "missing", **broken}
    before = {name: snapshot(d) for name, d in places.items() if d.exists()}
    argv = [a.format(**places) for a in args]
    if how == "subprocess":
        result = jaxnets(*argv, cwd=tmp_path)
        returncode, stderr = result.returncode, result.stderr
    else:
        monkeypatch.chdir(tmp_path)
        capsys.readouterr()
        returncode = cli.main(argv)
        stderr = capsys.readouterr().err
    assert returncode == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jaxnets: error: "), stderr
    assert re.search(message, lines[0]), lines[0]
    assert "Traceback" not in stderr
    assert {name: snapshot(places[name]) for name in before} == before  # nothing overwritten or damaged
    assert not (tmp_path / "new").exists() and not (tmp_path / "runs").exists()


def test_help_reads_well():
    result = jaxnets("train", "--help")
    assert result.returncode == 0
    for flag in (
        "--model",
        "--data",
        "--data-dir",
        "--hidden",
        "--normalization",
        "--dropout",
        "--optimizer",
        "--lr",
        "--lr-decay",
        "--reg",
        "--epochs",
        "--batch-size",
        "--patience",
        "--grads",
        "--seed",
        "--out",
        "--resume",
        "--quiet",
        "--devices",
        "--channels",
        "--with-replacement",
    ):
        assert flag in result.stdout, flag
