"""TensorBoard event files in run directories: read back, they hold the run's metrics.

Read with tensorboard's own event reader when tensorboard is installed, else by parsing the
TFRecord framing with tensorboardX's protobuf classes. Skipped without tensorboardX, except the
check that nothing changes without it.
"""

from __future__ import annotations

import json
import struct
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from jaxnets import cli, tblog


def _events(folder: Path) -> dict:
    """``{"scalars": {tag: [(step, value)]}, "images": {tag: count}, "plugins": set}`` over every event file."""
    files = sorted(folder.glob("events.out.tfevents.*"))
    assert files, f"no event file in {folder}"
    scalars, images, plugins = defaultdict(list), defaultdict(int), set()
    for path in files:
        for event in _read(path):
            for v in event.summary.value:
                if v.metadata.plugin_data.plugin_name:
                    plugins.add(v.metadata.plugin_data.plugin_name)
                kind, plugin = v.WhichOneof("value"), v.metadata.plugin_data.plugin_name
                if kind == "simple_value":
                    scalars[v.tag].append((event.step, v.simple_value))
                elif kind == "tensor" and plugin == "scalars":  # tensorboard's loader turns scalars into tensors
                    scalars[v.tag].append((event.step, v.tensor.float_val[0]))
                elif kind == "image" or plugin == "images":
                    images[v.tag] += 1
    return {"scalars": {k: sorted(s) for k, s in scalars.items()}, "images": dict(images), "plugins": plugins}


def _read(path: Path):
    try:
        from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    except ImportError:
        EventFileLoader = None
    if EventFileLoader is not None:
        yield from EventFileLoader(str(path)).Load()
        return
    from tensorboardX.proto.event_pb2 import Event

    raw = path.read_bytes()
    i = 0
    while i < len(raw):  # TFRecord: uint64 length, uint32 crc, payload, uint32 crc
        (n,) = struct.unpack("<Q", raw[i : i + 8])
        yield Event.FromString(raw[i + 12 : i + 12 + n])
        i += 12 + n + 4


def _values(pairs):
    return [v for _, v in pairs]


@pytest.fixture
def tbx():
    return pytest.importorskip("tensorboardX")


def test_train_events_match_metrics_json(tbx, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", "--model", "linear-softmax", "--epochs", "2", "--out", str(run), "--quiet"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    history = metrics["history"]
    ev = _events(run)
    s = ev["scalars"]
    # loss of every iteration, steps 1..N
    assert [step for step, _ in s["train/loss"]] == list(range(1, len(history["loss"]) + 1))
    np.testing.assert_allclose(_values(s["train/loss"]), history["loss"], rtol=1e-6)
    for tag, key in (("train_accuracy", "train_acc"), ("val_accuracy", "val_acc"), ("learning_rate", "lr")):
        assert [step for step, _ in s[f"epoch/{tag}"]] == [1, 2]
        np.testing.assert_allclose(_values(s[f"epoch/{tag}"]), history[key], rtol=1e-6)
    for key in tblog.FINAL_METRICS:
        np.testing.assert_allclose(_values(s[f"final/{key}"]), [metrics[key]], rtol=1e-6)
    assert ev["images"] == {"curves": 1, "weights": 1}
    assert "hparams" in ev["plugins"]


def test_resumed_run_appends_only_new_epochs(tbx, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", "--model", "linear-softmax", "--epochs", "1", "--out", str(run), "--quiet"]) == 0
    assert cli.main(["train", "--resume", "--epochs", "2", "--out", str(run), "--quiet"]) == 0
    history = json.loads((run / "metrics.json").read_text())["history"]
    s = _events(run)["scalars"]
    assert [step for step, _ in s["epoch/val_accuracy"]] == [1, 2]
    np.testing.assert_allclose(_values(s["epoch/val_accuracy"]), history["val_acc"], rtol=1e-6)
    assert [step for step, _ in s["train/loss"]] == list(range(1, len(history["loss"]) + 1))


def test_sweep_writes_one_hparams_run_per_configuration(tbx, tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["sweep", "--epochs", "1", "--lr", "1e-2,1e-1", "--reg", "0,1e-3", "--out", str(out), "--quiet"]
    assert cli.main(args) == 0
    record = json.loads((out / "sweep.json").read_text())
    assert _events(out)["images"] == {"sweep": 1}
    runs = sorted(p.name for p in (out / "hparams").iterdir())
    assert len(runs) == len(record["results"]) == 4
    for r in record["results"]:
        ev = _events(out / "hparams" / f"lr_{r['lr']:g}_reg_{r['reg']:g}")
        assert "hparams" in ev["plugins"]
        np.testing.assert_allclose(_values(ev["scalars"]["final/val_accuracy"]), [r["val_accuracy"]], rtol=1e-6)


def test_without_tensorboardx_nothing_changes(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tblog, "available", lambda: False)
    run = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cli.main(["train", "--model", "linear-softmax", "--epochs", "1", "--out", str(run), "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoint.npz",
        "config.json",
        "curves.png",
        "metrics.json",
        "weights.png",
    ]
