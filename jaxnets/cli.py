"""The ``jaxnets`` command: train, sweep, evaluate and gradient-check the course nets.

    jaxnets train                      # a batch-norm + dropout fc net on sklearn digits (~10 s)
    jaxnets train --model convnet --epochs 5 --out runs/cnn
    jaxnets train --resume --out runs/cnn --epochs 10
    jaxnets sweep --lr log:1e-2:1:5 --reg 1e-4,1e-3,1e-2
    jaxnets evaluate --checkpoint runs/cnn
    jaxnets gradcheck --model fc

Bad input (unknown names, non-positive sizes, a run directory that already holds a run, a
corrupt checkpoint, ...) ends with one line ``jaxnets: error: ...`` on stderr and exit status 2.
A run that diverged (non-finite loss) keeps its last good checkpoint, writes its metrics and
exits with status 1.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from jaxnets import gradcheck
from jaxnets.data import DATASETS

__all__ = [
    "main",
    "build_parser",
    "resolve_config",
    "build_model",
    "model_config",
    "parse_grid",
    "model_gradcheck",
    "MODELS",
    "MODEL_DEFAULTS",
    "EXIT_ERROR",
    "EXIT_DIVERGED",
]

MODELS = ("linear-svm", "linear-softmax", "two-layer", "fc", "digits-cnn", "three-layer-convnet", "convnet")
OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam")  # train.OPTIMIZERS (kept here so --help needs no jax)
NORMALIZATIONS = ("none", "batchnorm", "layernorm")
NUM_CLASSES = {"digits": 10, "digits-01": 2, "fashion-mnist": 10, "cifar10": 10}
EXIT_ERROR = 2
EXIT_DIVERGED = 1

_BASE = dict(
    hidden=[],
    channels=[],
    filter_size=3,
    normalization="none",
    dropout=0.0,
    optimizer="sgd",
    lr=1e-3,
    lr_decay=1.0,
    reg=0.0,
    epochs=10,
    batch_size=200,
    patience=None,
    with_replacement=False,
    augment=False,
)
#: Per-model hyperparameters used where a flag is not given (tuned on sklearn digits).
MODEL_DEFAULTS = {
    "linear-svm": {**_BASE, "optimizer": "momentum", "lr": 0.1, "reg": 1e-3, "epochs": 20, "batch_size": 100},
    "linear-softmax": {**_BASE, "optimizer": "momentum", "lr": 0.3, "reg": 1e-3, "epochs": 20, "batch_size": 100},
    "two-layer": {
        **_BASE,
        "hidden": [100],
        "optimizer": "momentum",
        "lr": 0.3,
        "lr_decay": 0.95,
        "reg": 1e-3,
        "epochs": 20,
        "batch_size": 100,
    },
    "fc": {
        **_BASE,
        "hidden": [256, 256],
        "normalization": "batchnorm",
        "dropout": 0.2,
        "optimizer": "adam",
        "lr": 1e-3,
        "lr_decay": 0.95,
        "reg": 1e-3,
        "epochs": 30,
        "batch_size": 50,
    },
    "digits-cnn": {**_BASE, "hidden": [28, 36], "optimizer": "adam", "lr": 1e-2, "epochs": 20, "batch_size": 20},
    "three-layer-convnet": {
        **_BASE,
        "channels": [32],
        "hidden": [100],
        "optimizer": "adam",
        "lr": 1e-3,
        "lr_decay": 0.95,
        "reg": 1e-3,
        "epochs": 15,
        "batch_size": 50,
    },
    "convnet": {
        **_BASE,
        "channels": [16, 32],
        "hidden": [128],
        "normalization": "batchnorm",
        "dropout": 0.2,
        "optimizer": "adam",
        "lr": 2e-3,
        "lr_decay": 0.95,
        "epochs": 15,
        "batch_size": 50,
    },
}
# What each model's shape can be set by: hidden widths / conv channels (exact count, or None: any
# count >= the minimum), and which of normalization / dropout / filter size apply.
_SHAPE_FLAGS = {
    "linear-svm": {},
    "linear-softmax": {},
    "two-layer": {"hidden": (1, 1)},
    "fc": {"hidden": (1, None), "normalization": NORMALIZATIONS, "dropout": True},
    "digits-cnn": {"hidden": (2, 2)},
    "three-layer-convnet": {"hidden": (1, 1), "channels": (1, 1), "filter_size": True},
    "convnet": {
        "hidden": (0, None),
        "channels": (1, None),
        "normalization": ("none", "batchnorm"),
        "dropout": True,
        "filter_size": True,
    },
}
_DEFAULT_REGS = "1e-4,1e-3,1e-2"
# Flags that may differ when a run is resumed: they do not change what is computed.
_RESUMABLE = {"epochs", "data_dir", "devices"}


class UsageError(Exception):
    """Bad command-line input: reported as one line ``jaxnets: error: ...``, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but errors raise ``UsageError`` (one line, no usage dump) instead of exiting."""

    def error(self, message):
        raise UsageError(message)


# ---------------------------------------------------------------------------------- arguments


def _number(convert, ok, expected):
    """An argparse type: ``convert(text)``, refused unless ``ok(value)``, the error naming ``expected``."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}")
        return value

    return parse


_positive_int = _number(int, lambda v: v > 0, "a positive integer")
_positive_float = _number(float, lambda v: v > 0 and math.isfinite(v), "a positive number")
_nonnegative_float = _number(float, lambda v: v >= 0 and math.isfinite(v), "a number >= 0")


def _fraction(text: str) -> float:
    value = _nonnegative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1) (the drop probability), got {text!r}")
    return value


def _decay(text: str) -> float:
    value = _positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1] (the per-epoch learning-rate factor), got {text!r}")
    return value


def _int_list(text: str) -> list[int]:
    """``"100,100"`` -> ``[100, 100]``; ``""`` -> ``[]``."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers like 100,100, got {text!r}"
        ) from None
    if any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers like 100,100, got {text!r}")
    return values


def parse_grid(text: str, name: str, *, positive: bool) -> list[float]:
    """A sweep axis: ``"1e-3,2e-3"`` or ``"log:START:STOP:N"`` (N log-spaced values, both ends included).

    >>> parse_grid("log:1e-4:1e-2:3", "--lr", positive=True)
    [0.0001, 0.001, 0.01]
    >>> parse_grid("0,1e-3", "--reg", positive=False)
    [0.0, 0.001]
    """
    try:
        if text.startswith("log:"):
            parts = text.split(":")
            if len(parts) != 4:
                raise ValueError
            start, stop, n = float(parts[1]), float(parts[2]), int(parts[3])
            if not (start > 0 and stop > 0 and n >= 1):
                raise ValueError
            values = np.logspace(math.log10(start), math.log10(stop), n).tolist() if n > 1 else [start]
            values = [float(f"{v:.6g}") for v in values]
        else:
            values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(
            f"{name}: expected a comma-separated list like 1e-3,1e-2 or log:START:STOP:N with "
            f"START, STOP > 0, got {text!r}"
        ) from None
    bad = [v for v in values if not math.isfinite(v) or (v <= 0 if positive else v < 0)]
    if not values or bad:
        raise UsageError(f"{name}: every value must be {'> 0' if positive else '>= 0'}, got {text!r}")
    return sorted(set(values))


def _add_model_args(p: argparse.ArgumentParser, default_model: str) -> None:
    g = p.add_argument_group("model and data")
    g.add_argument("--model", choices=MODELS, default=None, help=f"the net to train (default {default_model})")
    g.add_argument(
        "--data",
        choices=DATASETS,
        default=None,
        help="data set (default digits); digits-01 is the binary 0-vs-1 task of digits-cnn",
    )
    g.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help="folder holding fashion-mnist/ or cifar-10-batches-py/ (default $JAXNETS_DATA)",
    )
    g.add_argument(
        "--hidden",
        type=_int_list,
        default=None,
        metavar="N,N",
        help="hidden layer widths, e.g. 100,100 (default per model)",
    )
    g.add_argument(
        "--channels",
        type=_int_list,
        default=None,
        metavar="N,N",
        help="conv channels of three-layer-convnet (one value) and convnet, e.g. 32,64",
    )
    g.add_argument(
        "--filter-size",
        type=_positive_int,
        default=None,
        metavar="K",
        help="conv filter size of three-layer-convnet and convnet (default 3)",
    )
    g.add_argument(
        "--normalization",
        choices=NORMALIZATIONS,
        default=None,
        help="normalisation after hidden layers of fc (and batchnorm for convnet)",
    )
    g.add_argument(
        "--dropout",
        type=_fraction,
        default=None,
        metavar="P",
        help="drop probability after hidden layers of fc/convnet (default per model)",
    )
    g.add_argument(
        "--grads",
        choices=("auto", "manual"),
        default=None,
        help="gradients from autodiff or the hand-derived backward passes (default auto)",
    )
    g.add_argument("--seed", type=int, default=None, help="seed of the data split, init, order and dropout (default 0)")


def _add_optim_args(p: argparse.ArgumentParser, sweep: bool) -> None:
    g = p.add_argument_group("optimisation")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=None, help="update rule (default per model)")
    if sweep:
        g.add_argument(
            "--lr",
            default=None,
            metavar="GRID",
            help="learning rates: a list 1e-3,2e-3 or log:START:STOP:N (default 5 log-spaced "
            "values from 1/10 to 10x the model's default lr)",
        )
        g.add_argument(
            "--reg", default=None, metavar="GRID", help=f"L2 strengths, same forms (default {_DEFAULT_REGS})"
        )
    else:
        g.add_argument("--lr", type=_positive_float, default=None, help="learning rate (default per model)")
        g.add_argument("--reg", type=_nonnegative_float, default=None, help="L2 strength: loss += 0.5 reg sum W^2")
    g.add_argument("--lr-decay", type=_decay, default=None, metavar="F", help="multiply the lr by F after every epoch")
    g.add_argument("--epochs", type=_positive_int, default=None, help="epochs (default per model)")
    g.add_argument(
        "--batch-size", type=_positive_int, default=None, metavar="N", help="minibatch size (default per model)"
    )
    g.add_argument(
        "--with-replacement",
        action="store_true",
        default=None,
        help="sample each minibatch with replacement (as the course does) instead of shuffled passes",
    )
    g.add_argument(
        "--augment",
        action="store_true",
        default=None,
        help="augment training images: random crops of the image zero-padded by 2, left-right flips (p=0.5)",
    )
    if not sweep:
        g.add_argument(
            "--patience",
            type=_positive_int,
            default=None,
            metavar="E",
            help="stop after E epochs without a better val accuracy (default: never)",
        )
        g.add_argument(
            "--devices",
            type=_positive_int,
            default=None,
            metavar="N",
            help="split each minibatch over N devices (data parallel; default 1)",
        )


def build_parser() -> argparse.ArgumentParser:
    """The ``jaxnets`` argument parser (errors raise ``UsageError``)."""
    fmt = argparse.RawDescriptionHelpFormatter
    parser = _Parser(prog="jaxnets", description=__doc__, formatter_class=fmt)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,sweep,evaluate,gradcheck}")

    tr = sub.add_parser(
        "train",
        help="train one model, with progress, plots, metrics and checkpoints",
        description="Train one model and keep its best-validation weights.\n\nWrites under --out: "
        "config.json, metrics.json, curves.png, weights.png and checkpoint.npz (updated every "
        "epoch; --resume continues from it).\nExit status: 0 done, 1 training diverged, 2 bad input.",
        formatter_class=fmt,
    )
    _add_model_args(tr, "fc")
    _add_optim_args(tr, sweep=False)
    g = tr.add_argument_group("output")
    g.add_argument("--out", default=None, metavar="DIR", help="run directory (default runs/<model>-<data>-<timestamp>)")
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out DIR from its checkpoint (only --epochs may change, to train longer)",
    )
    g.add_argument(
        "--quiet", action="store_true", help="no progress bar or per-epoch lines; still print the test accuracy"
    )
    tr.set_defaults(run=_cmd_train)

    sw = sub.add_parser(
        "sweep",
        help="grid-search learning rate x reg, all configurations trained at once (vmap)",
        description="Learning rate x L2 strength grid search: every configuration trains at once "
        "(one vmapped, compiled program).\n\nWrites sweep.json and sweep.png (val accuracy heat map) "
        "under --out.",
        formatter_class=fmt,
    )
    _add_model_args(sw, "two-layer")
    _add_optim_args(sw, sweep=True)
    g = sw.add_argument_group("output")
    g.add_argument(
        "--out", default=None, metavar="DIR", help="output directory (default runs/sweep-<model>-<data>-<timestamp>)"
    )
    g.add_argument("--quiet", action="store_true", help="print only the best configuration and its test accuracy")
    sw.set_defaults(run=_cmd_sweep)

    ev = sub.add_parser(
        "evaluate",
        help="test accuracy and confusion matrix of a saved run",
        description="Rebuild a run's model from its config.json, print its test accuracy and "
        "confusion matrix, and write confusion.png next to the checkpoint.",
        formatter_class=fmt,
    )
    ev.add_argument("--checkpoint", required=True, metavar="PATH", help="a run directory or its checkpoint.npz")
    ev.add_argument("--data-dir", default=None, metavar="DIR", help="where the data lives now, if it moved")
    ev.add_argument(
        "--which",
        choices=("best", "last"),
        default="best",
        help="the best-validation weights (default) or those of the last epoch",
    )
    ev.set_defaults(run=_cmd_evaluate)

    gc = sub.add_parser(
        "gradcheck",
        help="check hand-derived gradients against autodiff and numeric ones",
        description="Without --model: every layer and loss with a hand-derived backward. With "
        "--model: a whole small model, per parameter.\nAll in float64; exit status 1 if an error "
        f"is over its bar (autodiff {gradcheck.AUTODIFF_BAR:.0e}, numeric {gradcheck.NUMERIC_BAR:.0e}).",
        formatter_class=fmt,
    )
    gc.add_argument("--model", choices=MODELS, default=None, help="check this whole model instead of the layers")
    gc.add_argument("--trials", type=_positive_int, default=2, help="random shapes per function (default 2)")
    gc.add_argument(
        "--seed", type=int, default=0, help="first seed (default 0); with --model: seed of the params and inputs"
    )
    gc.set_defaults(run=_cmd_gradcheck)
    return parser


# ------------------------------------------------------------------------------ configuration


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


_CONFIG_KEYS = (
    "model",
    "data",
    "data_dir",
    "hidden",
    "channels",
    "filter_size",
    "normalization",
    "dropout",
    "grads",
    "seed",
    "optimizer",
    "lr",
    "reg",
    "lr_decay",
    "epochs",
    "batch_size",
    "with_replacement",
    "augment",
    "patience",
    "devices",
)


def _given(args: argparse.Namespace) -> dict:
    """The configuration flags the user actually gave (argparse leaves the others at None)."""
    return {k: getattr(args, k) for k in _CONFIG_KEYS if getattr(args, k, None) is not None}


def resolve_config(given: dict, default_model: str = "fc") -> dict:
    """Every configuration value: the flags given, else the model's defaults.

    Raises:
      UsageError: a flag that does not apply to the chosen model or data (e.g. ``--channels``
        for an fc net, digits-cnn on a 10-class set).

    >>> cfg = resolve_config({"model": "two-layer", "hidden": [50]})
    >>> cfg["hidden"], cfg["optimizer"], cfg["loss"], cfg["num_classes"]
    ([50], 'momentum', 'softmax', 10)
    """
    model = given.get("model", default_model)
    cfg = {
        "model": model,
        "data": "digits",
        "data_dir": None,
        "grads": "auto",
        "seed": 0,
        "devices": 1,
        **MODEL_DEFAULTS[model],
    }
    cfg.update({k: v for k, v in given.items() if k in _CONFIG_KEYS})
    shape_flags = _SHAPE_FLAGS[model]
    for dest in ("hidden", "channels", "normalization", "dropout", "filter_size"):
        if dest in given and dest not in shape_flags:
            raise UsageError(f"{_flag(dest)} does not apply to --model {model}; drop it or pick a model that has it")
    for dest in ("hidden", "channels"):
        if dest in shape_flags:
            low, high = shape_flags[dest]
            n = len(cfg[dest])
            if n < low or (high is not None and n > high):
                want = f"exactly {low}" if low == high else f"at least {low}"
                raise UsageError(f"{_flag(dest)}: --model {model} takes {want} value(s), got {n} ({cfg[dest]})")
    if "normalization" in shape_flags and cfg["normalization"] not in shape_flags["normalization"]:
        raise UsageError(
            f"--normalization {cfg['normalization']}: --model {model} supports "
            f"{', '.join(shape_flags['normalization'])}"
        )
    if model == "digits-cnn" and cfg["data"] != "digits-01":
        raise UsageError(
            f"--model digits-cnn is the documents' binary 0-vs-1 net (one sigmoid output); "
            f"use it with --data digits-01, not --data {cfg['data']}"
        )
    cfg["loss"] = {"linear-svm": "svm", "digits-cnn": "squared_error"}.get(model, "softmax")
    cfg["num_classes"] = NUM_CLASSES[cfg["data"]]
    return cfg


def model_config(cfg: dict) -> dict:
    """The part of a configuration that decides the model's parameters (a checkpoint's identity)."""
    keys = [
        "num_classes",
        "loss",
        *(
            k
            for k in ("hidden", "channels", "filter_size", "normalization", "dropout")
            if k in _SHAPE_FLAGS[cfg["model"]]
        ),
    ]
    return {k: cfg[k] for k in keys}


def build_model(cfg: dict, ops):
    """The ``models.Model`` a configuration describes, built with ``ops`` (layers or manual_grads)."""
    from jaxnets import models

    name, C = cfg["model"], cfg["num_classes"]
    norm = None if cfg["normalization"] == "none" else cfg["normalization"]
    if name in ("linear-svm", "linear-softmax"):
        return models.linear_classifier(C, ops=ops)
    if name == "two-layer":
        return models.two_layer_net(cfg["hidden"][0], C, ops=ops)
    if name == "fc":
        return models.fc_net(cfg["hidden"], C, normalization=norm, dropout=cfg["dropout"], ops=ops)
    if name == "digits-cnn":
        return models.digits_cnn(tuple(cfg["hidden"]), ops=ops)
    if name == "three-layer-convnet":
        return models.three_layer_convnet(cfg["channels"][0], cfg["filter_size"], cfg["hidden"][0], C, ops=ops)
    return models.convnet(
        cfg["channels"],
        cfg["hidden"],
        C,
        normalization=norm,
        kernel_size=cfg["filter_size"],
        dropout=cfg["dropout"],
        ops=ops,
    )


def _train_config(cfg: dict):
    from jaxnets import train

    return train.TrainConfig(
        loss=cfg["loss"],
        optimizer=cfg["optimizer"],
        learning_rate=cfg["lr"],
        lr_decay=cfg["lr_decay"],
        reg=cfg["reg"],
        epochs=cfg["epochs"],
        batch_size=cfg["batch_size"],
        patience=cfg["patience"],
        with_replacement=cfg["with_replacement"],
        **(dict(crop_pad=2, flip_prob=0.5) if cfg.get("augment") else {}),
    )


def _check_devices(cfg: dict) -> None:
    import jax

    available = len(jax.devices())
    if cfg.get("devices", 1) > available:
        raise UsageError(
            f"--devices {cfg['devices']}: only {available} device(s) available "
            f"({jax.devices()[0].platform}); use --devices <= {available}"
        )
    if cfg["batch_size"] % cfg.get("devices", 1):
        raise UsageError(f"--batch-size {cfg['batch_size']} must be divisible by --devices {cfg['devices']}")


def _check_checkpoint(ckpt: Path, cfg: dict) -> dict:
    """The metadata of ``ckpt`` after checking it is readable and of ``cfg``'s model (cheap: before
    any data is loaded or anything compiled)."""
    from jaxnets import checkpoints

    meta = checkpoints.read_checkpoint_meta(ckpt)
    checkpoints.check_model(ckpt, meta, cfg["model"], model_config(cfg))
    return meta


def _prepare(cfg: dict, template: bool = True) -> dict:
    """Load the data and build the model of ``cfg`` (and, with ``template``, a fresh TrainState);
    every check that can fail happens here, before anything is written."""
    import jax

    from jaxnets import data, train

    _check_devices(cfg)
    if cfg["data_dir"] is not None and not Path(cfg["data_dir"]).expanduser().is_dir():
        raise UsageError(
            f"--data-dir {cfg['data_dir']}: no such directory; pass the folder holding the "
            f"{cfg['data']} files (or its parent)"
        )
    split = data.load_dataset(cfg["data"], cfg["data_dir"], seed=cfg["seed"])
    num_train = len(split["y_train"])
    if cfg["batch_size"] > num_train:
        raise UsageError(
            f"--batch-size {cfg['batch_size']} is larger than the training set ({num_train} examples "
            f"of {cfg['data']}); use --batch-size <= {num_train}"
        )
    ops, loss_ops = train.grad_namespaces(cfg["grads"])
    model = build_model(cfg, ops)
    tconfig = _train_config(cfg)
    steps = max(num_train // cfg["batch_size"], 1)
    key = jax.random.key(cfg["seed"])
    input_shape = split["X_train"].shape[1:]
    prepared = dict(
        split=split, model=model, loss_ops=loss_ops, tconfig=tconfig, steps=steps, key=key, input_shape=input_shape
    )
    if template:
        # One compiled program instead of dozens of eagerly dispatched (and compiled) small ops.
        init = jax.jit(lambda k: train.init_train_state(model, k, input_shape, tconfig, steps))
        ts = init(jax.random.fold_in(key, 0))
        prepared["template"] = ts._replace(epoch=int(ts.epoch), best_val_acc=float(ts.best_val_acc))
    return prepared


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e}); it is corrupt") from None


def _fresh_out(out: Path, markers: tuple[str, ...], resume_hint: bool) -> Path:
    """``out`` after checking it holds no earlier run (so nothing gets overwritten)."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a directory; choose another --out")
    found = [m for m in markers if (out / m).exists()]
    if found:
        hint = "pass --resume to continue it, or " if resume_hint else ""
        raise UsageError(f"--out {out} already holds a run ({found[0]}); {hint}choose another --out")
    return out


def _default_out(prefix: str) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out, n = Path("runs") / f"{prefix}-{stamp}", 2
    while out.exists():
        out, n = Path("runs") / f"{prefix}-{stamp}-{n}", n + 1
    return out


def _config_record(cfg: dict, given: dict, argv: list[str], command: str) -> dict:
    from jaxnets import __version__

    return {
        "command": command,
        "argv": argv,
        "jaxnets_version": __version__,
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "given": given,
        "config": cfg,
        "model_config": model_config(cfg),
    }


# ---------------------------------------------------------------------------------------- train


def _resume_config(out: Path, given: dict) -> tuple[dict, dict]:
    """The saved configuration of the run in ``out``, with ``--epochs`` (and --data-dir, --devices)
    updated; any other flag given must agree with it."""
    path = out / "config.json"
    if not path.is_file():
        raise UsageError(f"--resume: {out} holds no run (no config.json); start one without --resume")
    record = _read_json(path)
    saved = record.get("config")
    if not isinstance(saved, dict) or "model" not in saved:
        raise ValueError(f"{path}: has no 'config' of a jaxnets train run; it is corrupt")
    for dest, value in given.items():
        if dest not in _RESUMABLE and json.loads(json.dumps(value)) != saved.get(dest):
            raise UsageError(
                f"{_flag(dest)} {value} conflicts with the saved run's {dest}={saved.get(dest)} in {path}; "
                f"drop it to resume (only --epochs may change), or start a new run with another --out"
            )
    return {**saved, **{k: v for k, v in given.items() if k in _RESUMABLE}}, record


def _metrics(cfg, ts, test_acc, wall, device) -> dict:
    history = ts.history
    val = np.asarray(history["val_acc"], dtype=float)
    best_epoch = int(np.nanargmax(val)) + 1 if val.size and np.isfinite(val).any() else None
    return {
        "model": cfg["model"],
        "data": cfg["data"],
        "test_accuracy": test_acc,
        "val_accuracy": float(ts.best_val_acc) if ts.epoch else None,
        "train_accuracy": history["train_acc"][best_epoch - 1] if best_epoch else None,
        "best_epoch": best_epoch,
        "epochs_completed": int(ts.epoch),
        "stopped": history.get("stopped"),
        "wall_time_s": wall,
        "train_time_s": float(sum(history["epoch_time"])),
        "device": device,
        "history": history,
    }


def _cmd_train(args) -> int:
    import jax
    from tqdm import tqdm

    from jaxnets import checkpoints, plots, train

    start = time.perf_counter()
    given = _given(args)
    if args.resume:
        if args.out is None:
            raise UsageError("--resume needs --out DIR, the directory of the run to continue")
        out = Path(args.out)
        cfg, record = _resume_config(out, given)
    else:
        cfg = resolve_config(given)
        out = _fresh_out(
            Path(args.out) if args.out else _default_out(f"{cfg['model']}-{cfg['data']}"),
            ("config.json", checkpoints.CHECKPOINT_NAME, "metrics.json"),
            resume_hint=True,
        )
        record = _config_record(cfg, given, args.argv, "train")
    ckpt = out / checkpoints.CHECKPOINT_NAME
    identity = dict(model_name=cfg["model"], model_config=model_config(cfg))
    if args.resume:
        if not ckpt.is_file():
            raise UsageError(
                f"--resume: {out} has no {checkpoints.CHECKPOINT_NAME}; start a new run with another --out"
            )
        done = _check_checkpoint(ckpt, cfg)["epoch"]
        if done >= cfg["epochs"]:
            raise UsageError(
                f"--resume: the run in {out} already has {done} epochs; pass --epochs N with N > {done} to train longer"
            )
    prep = _prepare(cfg)
    if args.resume:
        ts, _ = checkpoints.load_checkpoint(ckpt, prep["template"], **identity)
        ts.history.pop("stopped", None)
        record = {
            **record,
            "config": cfg,
            "resumed": [
                *record.get("resumed", []),
                {
                    "from_epoch": ts.epoch,
                    "argv": args.argv,
                    "at": datetime.datetime.now().isoformat(timespec="seconds"),
                },
            ],
        }
        checkpoints.write_json(out / "config.json", record)
    else:
        out.mkdir(parents=True, exist_ok=True)
        checkpoints.write_json(out / "config.json", record)
        ts = prep["template"]
        checkpoints.save_checkpoint(ckpt, ts, extra={"config": cfg}, **identity)

    split, steps = prep["split"], prep["steps"]
    device = str(jax.devices()[0])
    quiet = args.quiet
    if not quiet:
        print(
            f"training {cfg['model']} on {cfg['data']} ({len(split['y_train'])} train, {len(split['y_val'])} val, "
            f"{len(split['y_test'])} test) for {cfg['epochs']} epochs of {steps} steps on {device}; run dir {out}"
        )
    bar = tqdm(
        total=cfg["epochs"] * steps,
        initial=ts.epoch * steps,
        unit="it",
        desc=cfg["model"],
        disable=quiet,
        file=sys.stderr,
        dynamic_ncols=True,
        leave=False,
    )

    def on_epoch(ts, rec):
        checkpoints.save_checkpoint(ckpt, ts, extra={"config": cfg}, **identity)
        bar.update(rec["steps"])
        if not quiet:
            bar.write(
                f"epoch {rec['epoch']:>3}/{cfg['epochs']}  loss {rec['loss']:.4f}  train acc {rec['train_acc']:.4f}"
                f"  val acc {rec['val_acc']:.4f}  ({rec['time']:.2f} s, {time.perf_counter() - start:.1f} s elapsed)",
                file=sys.stdout,
            )

    try:
        ts = train.fit(
            prep["model"],
            split,
            prep["tconfig"],
            key=prep["key"],
            loss_ops=prep["loss_ops"],
            resume=ts,
            on_epoch=on_epoch,
            devices=cfg["devices"],
        )
    finally:
        bar.close()
    model = prep["model"]
    test_acc = train.accuracy(model, ts.best_params, ts.best_state, split["X_test"], split["y_test"])
    metrics = _metrics(cfg, ts, test_acc, time.perf_counter() - start, device)
    checkpoints.write_json(out / "metrics.json", metrics)
    title = f"{cfg['model']} on {cfg['data']}: test accuracy {test_acc:.4f}"
    plots.plot_curves(ts.history, out / "curves.png", title=title)
    weights = np.asarray(ts.best_params["W1"])
    plots.plot_image_grid(
        plots.first_layer_images(weights, prep["input_shape"]),
        out / "weights.png",
        title=f"{cfg['model']}: first-layer {'filters' if weights.ndim == 4 else 'weights'}",
    )
    stopped = ts.history.get("stopped")
    diverged = bool(stopped and stopped.startswith("diverged"))
    if diverged:
        print(f"jaxnets: training stopped: {stopped}; the checkpoint keeps epoch {ts.epoch}", file=sys.stderr)
    elif stopped and not quiet:
        print(f"stopped: {stopped}")
    if not quiet:
        print(
            f"best val accuracy {metrics['val_accuracy'] if metrics['val_accuracy'] is not None else float('nan'):.4f}"
            f" at epoch {metrics['best_epoch']}; wrote config.json, metrics.json, curves.png, weights.png, "
            f"{checkpoints.CHECKPOINT_NAME} to {out} ({metrics['wall_time_s']:.1f} s)"
        )
    print(f"test accuracy: {test_acc:.6f}")
    return EXIT_DIVERGED if diverged else 0


# ---------------------------------------------------------------------------------------- sweep


def _cmd_sweep(args) -> int:
    import jax

    from jaxnets import checkpoints, plots, train

    start = time.perf_counter()
    lr_text, reg_text = args.lr, args.reg
    args.lr = args.reg = None  # grids, not single values
    given = _given(args)
    cfg = resolve_config(given, default_model="two-layer")
    default_lr = cfg["lr"]
    lr_text = lr_text or f"log:{default_lr / 10:g}:{default_lr * 10:g}:5"
    lrs = parse_grid(lr_text, "--lr", positive=True)
    regs = parse_grid(reg_text or _DEFAULT_REGS, "--reg", positive=False)
    cfg.update(lr=lrs, reg=regs)
    out = _fresh_out(
        Path(args.out) if args.out else _default_out(f"sweep-{cfg['model']}-{cfg['data']}"),
        ("sweep.json", "config.json"),
        resume_hint=False,
    )
    prep = _prepare({**cfg, "lr": lrs[0], "reg": regs[0]}, template=False)
    tconfig, split, model = prep["tconfig"], prep["split"], prep["model"]
    if not args.quiet:
        print(
            f"training {len(lrs) * len(regs)} configurations of {cfg['model']} on {cfg['data']} at once "
            f"({len(lrs)} lr x {len(regs)} reg, {cfg['epochs']} epochs each) on {jax.devices()[0]}"
        )
    result = train.sweep(model, split, lrs, regs, tconfig, key=prep["key"], loss_ops=prep["loss_ops"])
    # float32 grid values come back as e.g. 0.0010000000474974513: report the values that were asked for
    as_given = lambda v, grid: min(grid, key=lambda g: abs(g - v))
    rows = sorted(
        (as_given(lr, lrs), as_given(reg, regs), tr, va)
        for lr, reg, tr, va in zip(
            result["learning_rate"].tolist(),
            result["reg"].tolist(),
            result["train_acc"].tolist(),
            result["val_acc"].tolist(),
            strict=False,
        )
    )
    if not args.quiet:
        for lr, reg, tr_acc, val_acc in rows:
            print(f"lr {lr:e} reg {reg:e} train accuracy: {tr_acc:f} val accuracy: {val_acc:f}")
    val = np.nan_to_num(np.asarray(result["val_acc"], dtype=float), nan=-1.0)
    best = int(np.argmax(val))
    best_params = jax.tree_util.tree_map(lambda a: a[best], result["params"])
    best_state = jax.tree_util.tree_map(lambda a: a[best], result["state"])
    test_acc = train.accuracy(model, best_params, best_state, split["X_test"], split["y_test"])
    lr_b, reg_b = as_given(float(result["learning_rate"][best]), lrs), as_given(float(result["reg"][best]), regs)
    print(f"best validation accuracy achieved during cross-validation: {val[best]:f} (lr {lr_b:e} reg {reg_b:e})")
    print(f"test accuracy of the best configuration: {test_acc:f}")

    out.mkdir(parents=True, exist_ok=True)
    grid = np.full((len(lrs), len(regs)), np.nan)
    results = []
    for lr, reg, tr_acc, val_acc in rows:
        grid[lrs.index(lr), regs.index(reg)] = val_acc
        results.append({"lr": lr, "reg": reg, "train_accuracy": tr_acc, "val_accuracy": val_acc})
    record = {
        **_config_record(cfg, {**given, "lr": lr_text, "reg": reg_text or _DEFAULT_REGS}, args.argv, "sweep"),
        "results": results,
        "best": {
            "lr": lr_b,
            "reg": reg_b,
            "val_accuracy": float(val[best]),
            "train_accuracy": float(result["train_acc"][best]),
            "test_accuracy": test_acc,
        },
        "train_time_s": float(result["time"]),
        "wall_time_s": time.perf_counter() - start,
        "device": str(jax.devices()[0]),
    }
    checkpoints.write_json(out / "sweep.json", record)
    plots.plot_sweep(
        lrs,
        regs,
        grid,
        out / "sweep.png",
        title=f"{cfg['model']} on {cfg['data']}: val accuracy after {cfg['epochs']} epochs",
    )
    if not args.quiet:
        print(
            f"wrote sweep.json and sweep.png to {out} ({record['wall_time_s']:.1f} s, "
            f"training {record['train_time_s']:.1f} s)"
        )
    return 0


# ------------------------------------------------------------------------------------- evaluate


def _cmd_evaluate(args) -> int:
    from jaxnets import checkpoints, plots, train
    from jaxnets.data import CIFAR10_CLASSES, FASHION_MNIST_CLASSES

    path = Path(args.checkpoint)
    ckpt = path / checkpoints.CHECKPOINT_NAME if path.is_dir() else path
    if not ckpt.is_file():
        raise UsageError(
            f"--checkpoint {path}: no such {'checkpoint in that directory' if path.is_dir() else 'file'}; "
            f"pass a run directory or its {checkpoints.CHECKPOINT_NAME}"
        )
    config_path = ckpt.parent / "config.json"
    if config_path.is_file():
        cfg = _read_json(config_path).get("config")
        source = config_path
    else:  # a checkpoint copied out of its run directory still knows its configuration
        cfg = checkpoints.read_checkpoint_meta(ckpt).get("extra", {}).get("config")
        source = ckpt
    if not isinstance(cfg, dict) or cfg.get("model") not in MODELS:
        raise ValueError(f"{source}: holds no jaxnets train configuration; pass a directory written by jaxnets train")
    if args.data_dir is not None:
        cfg = {**cfg, "data_dir": args.data_dir}
    cfg = {**cfg, "devices": 1}
    _check_checkpoint(ckpt, cfg)
    prep = _prepare(cfg)
    ts, meta = checkpoints.load_checkpoint(
        ckpt, prep["template"], model_name=cfg["model"], model_config=model_config(cfg)
    )
    params, state = (ts.best_params, ts.best_state) if args.which == "best" else (ts.params, ts.state)
    model, split = prep["model"], prep["split"]
    scores = train.predict(model, params, state, split["X_test"], batch_size=min(1000, len(split["y_test"])))
    preds = np.asarray(train.labels_from_scores(scores))
    y = split["y_test"]
    acc = float(np.mean(preds == y))
    C = cfg["num_classes"]
    matrix = plots.confusion_matrix(y, preds, C)
    names = {"fashion-mnist": FASHION_MNIST_CLASSES, "cifar10": CIFAR10_CLASSES}.get(cfg["data"])
    print(
        f"{cfg['model']} on {cfg['data']}, {args.which} weights (epoch {ts.epoch} checkpoint): {len(y)} test examples"
    )
    print(f"test accuracy: {acc:.6f}")
    width = max(5, len(str(matrix.max())) + 1)
    print("confusion matrix (rows: true class, columns: predicted class)")
    print(" " * 6 + "".join(f"{j:>{width}}" for j in range(C)))
    for i in range(C):
        print(f"{i:>5} " + "".join(f"{n:>{width}}" for n in matrix[i]) + (f"   {names[i]}" if names else ""))
    target = ckpt.parent / "confusion.png"
    plots.plot_confusion(
        matrix, target, class_names=names, title=f"{cfg['model']} on {cfg['data']}: test accuracy {acc:.4f}"
    )
    print(f"wrote {target}")
    return 0


# ------------------------------------------------------------------------------------ gradcheck


def _gradcheck_models():
    """Small versions of each model for whole-model checks: (factory(ops), input shape, loss, step)."""
    from jaxnets import models

    # Numeric steps chosen per net (measured over seeds 0-2): large enough that rounding noise
    # (~eps |f| / h) stays far under the bar, small enough that relu/max-pool inputs stay 2h away
    # from their kinks.
    return {
        "linear-svm": (lambda ops: models.linear_classifier(4, ops=ops), (6,), "svm", 1e-4),
        "linear-softmax": (lambda ops: models.linear_classifier(4, ops=ops), (2, 3), "softmax", 1e-4),
        "two-layer": (lambda ops: models.two_layer_net(7, 4, weight_scale=0.5, ops=ops), (6,), "softmax", 1e-4),
        "fc": (
            lambda ops: models.fc_net([6, 5], 4, normalization="batchnorm", dropout=0.3, ops=ops),
            (6,),
            "softmax",
            1e-5,
        ),
        "digits-cnn": (lambda ops: models.digits_cnn((5, 6), ops=ops), (1, 8, 8), "squared_error", 1e-4),
        "three-layer-convnet": (
            lambda ops: models.three_layer_convnet(3, 3, 6, 4, ops=ops),
            (2, 6, 6),
            "softmax",
            1e-4,
        ),
        "convnet": (lambda ops: models.convnet((3, 4), (5,), 4, dropout=0.2, ops=ops), (2, 8, 8), "softmax", 1e-5),
    }


def _grad_error(a, b, zero_atol: float) -> float:
    """``rel_error`` over entries that are not exact zeros of the math; absolute error on those.

    Some gradient entries are 0 in exact arithmetic (a bias just before batch norm, a unit
    dropout removed for the whole batch) and come out as ~1e-17 residue on both sides, where a
    relative measure is meaningless.
    """
    a, b = np.asarray(a), np.asarray(b)
    zero = np.maximum(np.abs(a), np.abs(b)) < max(zero_atol, 1e-12)
    absolute = float(np.max(np.abs(a - b)[zero], initial=0.0))
    relative = gradcheck.rel_error(a[~zero], b[~zero]) if (~zero).any() else 0.0
    return max(relative, absolute if absolute > zero_atol else 0.0)


def _layer_order(name: str):
    """Parameters in the order of the net: W1, b1, gamma1, beta1, W2, ..."""
    stem = name.rstrip("0123456789")
    return (
        int(name[len(stem) :] or 0),
        ("W", "b", "gamma", "beta").index(stem) if stem in ("W", "b", "gamma", "beta") else 9,
        name,
    )


def model_gradcheck(name: str, seed: int = 0) -> dict:
    """Per-parameter max relative error of a small ``name`` model's manual gradient, in float64.

    The loss is ``data_loss + 0.5 * 0.1 * sum W^2`` on 4 random examples (dropout with a fixed
    key, so both sides see the same masks).

    Returns:
      ``{"input_shape", "loss", "step", "errors": {param: {"autodiff": e, "numeric": e}}}``.
    """
    import jax
    import jax.numpy as jnp

    from jaxnets import layers, losses, manual_grads, train

    factory, input_shape, loss, h = _gradcheck_models()[name]
    with gradcheck.float64():
        rng = np.random.default_rng(seed)
        auto_model, manual_model = factory(layers), factory(manual_grads)
        params, state = auto_model.init(jax.random.key(seed + 1), input_shape)
        params = jax.tree_util.tree_map(
            lambda a: jnp.asarray(a, jnp.float64) + 0.1 * rng.standard_normal(a.shape), params
        )
        state = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), state)
        x = jnp.asarray(rng.standard_normal((4, *input_shape)))
        y = jnp.asarray(rng.integers(0, 2 if loss == "squared_error" else 4, 4))
        key = jax.random.key(seed + 3)

        def objective(model, loss_ops):
            return lambda p: train.loss_fn(model, p, state, x, y, reg=0.1, key=key, loss=loss, loss_ops=loss_ops)[0]

        manual = jax.jit(jax.grad(objective(manual_model, manual_grads)))(params)
        auto = jax.jit(jax.grad(objective(auto_model, losses)))(params)
        numeric = gradcheck.numeric_grads(objective(auto_model, losses), (params,), (0,), h=h)[0]
        errors = {
            k: {"autodiff": _grad_error(manual[k], auto[k], 1e-14), "numeric": _grad_error(manual[k], numeric[k], 1e-9)}
            for k in sorted(params, key=_layer_order)
        }
    return {"input_shape": input_shape, "loss": loss, "step": h, "errors": errors}


def _cmd_model_gradcheck(args) -> int:
    report = model_gradcheck(args.model, args.seed)
    print(
        f"gradcheck {args.model}: float64, 4 examples of shape {report['input_shape']}, {report['loss']} loss "
        f"+ L2 (reg 0.1), numeric step {report['step']:g}"
    )
    width = max(len(name) for name in report["errors"]) + len(" max relative error:") + 1
    print(f"{'':<{width}}{'vs autodiff':>13}{'vs numeric':>13}")
    failed = []
    for name, e in report["errors"].items():
        ok = e["autodiff"] < gradcheck.AUTODIFF_BAR and e["numeric"] < gradcheck.NUMERIC_BAR
        failed += [] if ok else [name]
        print(
            f"{name + ' max relative error:':<{width}}{e['autodiff']:>13.2e}{e['numeric']:>13.2e}"
            + ("" if ok else "   FAIL")
        )
    n = len(report["errors"])
    print(
        f"\n{n - len(failed)}/{n} parameters within the bars (autodiff < {gradcheck.AUTODIFF_BAR:.0e}, "
        f"numeric < {gradcheck.NUMERIC_BAR:.0e})" + (f"; over: {', '.join(failed)}" if failed else "")
    )
    if any(report["errors"][name]["autodiff"] < gradcheck.AUTODIFF_BAR for name in failed):
        print(
            "(manual agrees with autodiff there: a numeric error near 1 usually means a finite-difference "
            "step crossed a relu or max-pool kink; try another --seed)"
        )
    return 1 if failed else 0


def _cmd_gradcheck(args) -> int:
    """One row per layer and loss (or per parameter of ``--model``): max relative error of the manual gradient."""
    if args.model is not None:
        return _cmd_model_gradcheck(args)
    print(
        f"{'function':<22}{'vs autodiff':>14}{'vs numeric':>14}   bars: autodiff < "
        f"{gradcheck.AUTODIFF_BAR:.0e}, numeric < {gradcheck.NUMERIC_BAR:.0e}"
    )
    failed = []
    for case in gradcheck.CASES:
        worst = {"autodiff": 0.0, "numeric": 0.0}
        for seed in range(args.seed, args.seed + args.trials):
            errors = gradcheck.check_case(case, seed)
            worst = {k: max(worst[k], errors[k]) for k in worst}
        ok = worst["autodiff"] < gradcheck.AUTODIFF_BAR and worst["numeric"] < gradcheck.NUMERIC_BAR
        failed += [] if ok else [case.name]
        print(f"{case.name:<22}{worst['autodiff']:>14.2e}{worst['numeric']:>14.2e}   {'ok' if ok else 'FAIL'}")
    print(
        f"\n{len(gradcheck.CASES) - len(failed)}/{len(gradcheck.CASES)} within their bars"
        + (f"; over: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


# ----------------------------------------------------------------------------------------- main


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status (0 ok, 1 diverged / gradcheck over its bars, 2 bad input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        args.argv = argv
        return args.run(args)
    except UsageError as e:
        print(f"jaxnets: error: {_one_line(e)}", file=sys.stderr)
    except FileNotFoundError as e:
        print(f"jaxnets: error: {_one_line(e.strerror and f'{e.filename}: {e.strerror}' or e)}", file=sys.stderr)
    except KeyboardInterrupt:  # checkpoints are written atomically: the last finished epoch is safe
        print("jaxnets: interrupted (a train run continues with --resume --out DIR)", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `jaxnets ... | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (ValueError, TypeError, OSError) as e:
        print(f"jaxnets: error: {_one_line(e)}", file=sys.stderr)
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
