"""The model registry: adding a model is one entry, and the command trains it; bad input vs bug."""

import json
import re
import tempfile

import jax
import pytest

from jaxnets import cli, models, presets
from jaxnets.errors import InputError


@pytest.fixture
def registered():
    """Register presets for one test and remove them afterwards."""
    added = []

    def add(preset):
        added.append(preset.name)
        return presets.register(preset)

    yield add
    for name in added:
        presets.REGISTRY.pop(name, None)


def test_a_registered_toy_model_trains_through_the_command(registered, tmp_path, capsys):
    registered(
        presets.Preset(
            "toy-linear",
            lambda cfg, ops: models.linear_classifier(cfg["num_classes"], ops=ops),
            {"optimizer": "sgd", "lr": 0.5, "epochs": 2, "batch_size": 100},
            {},
            gradcheck=presets.GradcheckVariant(lambda ops: models.linear_classifier(4, ops=ops), (5,)),
        )
    )
    out = tmp_path / "toy"
    assert cli.main(["train", "--model", "toy-linear", "--out", str(out), "--quiet"]) == 0
    accuracy = float(re.fullmatch(r"test accuracy: (\d\.\d{6})\n", capsys.readouterr().out).group(1))
    assert accuracy > 0.8  # a linear classifier on digits after two epochs
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "toy-linear" and metrics["epochs_completed"] == 2
    assert cli.main(["evaluate", "--checkpoint", str(out)]) == 0
    assert cli.main(["gradcheck", "--model", "toy-linear"]) == 0
    assert "2/2 parameters within the bars" in capsys.readouterr().out


def test_shape_options_come_from_the_entry(registered):
    registered(
        presets.Preset(
            "toy-mlp", lambda cfg, ops: models.fc_net(cfg["hidden"], 10, ops=ops), {"hidden": [8]}, {"hidden": (1, 2)}
        )
    )
    assert presets.resolve_config({"model": "toy-mlp", "hidden": [4, 4]})["hidden"] == [4, 4]
    with pytest.raises(InputError, match=r"hidden: model toy-mlp takes at least 1 value"):
        presets.resolve_config({"model": "toy-mlp", "hidden": []})
    with pytest.raises(InputError, match="channels does not apply to model toy-mlp"):
        presets.resolve_config({"model": "toy-mlp", "channels": [3]})
    with pytest.raises(InputError, match="shape_options must be among"):
        presets.register(presets.Preset("bad", lambda cfg, ops: None, {}, {"width": True}))


@pytest.mark.slow  # long on 2 cores: runs in the slow tier (pytest -m slow)
def test_every_named_model_builds_from_its_defaults():
    for name in presets.names():
        data = presets.get(name).datasets[0] if presets.get(name).datasets else "digits"
        cfg = presets.resolve_config({"model": name, "data": data})
        shape = (1, 8, 8)
        params, _ = presets.build_model(cfg).init(jax.random.key(0), shape)
        assert "W1" in params, name
        assert set(presets.model_config(cfg)) >= {"num_classes", "loss"}


def _raising(error):
    def build(cfg, ops):
        raise error

    return build


def test_library_bad_input_is_exit_2_one_line(registered, tmp_path, capsys):
    registered(presets.Preset("toy-bad", _raising(InputError("hidden must be positive, got -1")), {}, {}))
    assert cli.main(["train", "--model", "toy-bad", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err == "jaxnets: error: hidden must be positive, got -1\n"


@pytest.mark.parametrize("error", [RuntimeError("boom"), ValueError("boom"), KeyError("boom")])
def test_a_bug_is_exit_1_with_the_traceback_in_a_file(error, registered, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    registered(presets.Preset("toy-bug", _raising(error), {}, {}))
    assert cli.main(["train", "--model", "toy-bug", "--out", str(tmp_path / "r")]) == cli.EXIT_BUG == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "a bug in jaxnets, not in your input" in lines[0], lines
    path = re.search(r"full traceback written to (\S+)$", lines[0]).group(1)
    assert path.startswith(str(tmp_path))
    text = open(path).read()
    assert text.startswith("Traceback") and f"{type(error).__name__}: " in text and "_raising" not in lines[0]
    assert not (tmp_path / "r").exists()
