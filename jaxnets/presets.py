"""The registry of named models: one entry per model the command, examples and tests can name.

An entry (a ``Preset``) holds everything the rest of the code needs to know about a model:
how to build it from a configuration, its default hyperparameters, which shape options apply,
its loss, and a small variant for whole-model gradient checks. Adding a model is one
``register(Preset(...))`` call; ``jaxnets train --model NAME`` then trains it.

>>> cfg = resolve_config({"model": "two-layer", "hidden": [50]})
>>> cfg["hidden"], cfg["optimizer"], cfg["loss"], cfg["num_classes"]
([50], 'momentum', 'softmax', 10)
>>> build_model(cfg).init(jax.random.key(0), (64,))[0]["W1"].shape
(64, 50)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets import gradcheck, layers, losses, manual_grads, models, train
from jaxnets.data import DATASETS
from jaxnets.errors import InputError
from jaxnets.models import Model

__all__ = [
    "Preset",
    "GradcheckVariant",
    "REGISTRY",
    "register",
    "names",
    "get",
    "OPTIMIZERS",
    "NORMALIZATIONS",
    "DATASETS",
    "NUM_CLASSES",
    "CONFIG_KEYS",
    "SHAPE_OPTIONS",
    "normalization_arg",
    "resolve_config",
    "model_config",
    "build_model",
    "train_config",
    "prepare",
    "model_gradcheck",
]

OPTIMIZERS = train.OPTIMIZERS
#: Normalization choices of a configuration; ``"none"`` is ``models``' ``None``.
NORMALIZATIONS = ("none", "batchnorm", "layernorm")
NUM_CLASSES = {"digits": 10, "digits-01": 2, "mnist": 10, "fashion-mnist": 10, "cifar10": 10}
#: The options a configuration has (each is a ``jaxnets train`` flag, ``_`` written ``-``).
CONFIG_KEYS = (
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
#: Options that shape a model; a preset's ``shape_options`` says which apply to it.
SHAPE_OPTIONS = ("hidden", "channels", "filter_size", "normalization", "dropout")

BASE_DEFAULTS: dict[str, Any] = dict(
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


class GradcheckVariant(NamedTuple):
    """A small version of a model for whole-model gradient checks.

    ``factory(ops)`` builds it; ``input_shape`` is one example's shape; ``step`` the numeric
    step: large enough that rounding noise (~eps |f| / h) stays far under the bar, small enough
    that relu / max-pool inputs stay 2h away from their kinks (measured over seeds 0-2).
    """

    factory: Callable[[ModuleType], Model]
    input_shape: tuple[int, ...]
    step: float = 1e-4


class Preset(NamedTuple):
    """One named model.

    Attributes:
      name: the name (``--model NAME``).
      build: ``build(cfg, ops) -> Model`` from a resolved configuration (``resolve_config``).
      defaults: hyperparameters used where a configuration does not set them (merged over
        ``BASE_DEFAULTS``).
      shape_options: which of ``SHAPE_OPTIONS`` apply. ``hidden`` / ``channels`` map to
        ``(min count, max count or None)``; ``normalization`` to the allowed choices; others to
        ``True``.
      loss: ``"softmax"``, ``"svm"`` or ``"squared_error"``.
      gradcheck: the small variant for whole-model gradient checks (None: not checked).
      datasets: the data sets it applies to (None: all), and ``about`` says why.
    """

    name: str
    build: Callable[[dict, ModuleType], Model]
    defaults: dict
    shape_options: dict
    loss: str = "softmax"
    gradcheck: GradcheckVariant | None = None
    datasets: tuple[str, ...] | None = None
    about: str = ""


REGISTRY: dict[str, Preset] = {}


def register(preset: Preset) -> Preset:
    """Add ``preset`` to the registry (replacing one of the same name) and return it.

    >>> toy = register(Preset("toy", lambda cfg, ops: models.linear_classifier(cfg["num_classes"], ops=ops), {}, {}))
    >>> "toy" in names()
    True
    >>> del REGISTRY["toy"]
    """
    if preset.loss not in train.LOSSES:
        raise InputError(f"loss must be one of {tuple(train.LOSSES)}, got {preset.loss!r}")
    unknown = set(preset.shape_options) - set(SHAPE_OPTIONS)
    if unknown:
        raise InputError(f"shape_options must be among {SHAPE_OPTIONS}, got {sorted(unknown)}")
    REGISTRY[preset.name] = preset._replace(defaults={**BASE_DEFAULTS, **preset.defaults})
    return REGISTRY[preset.name]


def names() -> tuple[str, ...]:
    """The registered model names, in registration order."""
    return tuple(REGISTRY)


def get(name: str) -> Preset:
    """The preset called ``name``."""
    if name not in REGISTRY:
        raise InputError(f"model must be one of {names()}, got {name!r}")
    return REGISTRY[name]


def normalization_arg(choice: str) -> str | None:
    """A configuration's normalization choice as ``models`` takes it (``"none"`` -> ``None``)."""
    return None if choice == "none" else choice


def _identity(dest: str) -> str:
    return dest


def resolve_config(given: dict, default_model: str = "fc", *, name: Callable[[str], str] = _identity) -> dict:
    """Every configuration value: the options given, else the model's defaults.

    ``name(option)`` spells an option in error messages (the command passes one that writes
    ``--batch-size`` for ``batch_size``).

    Raises:
      InputError: an option that does not apply to the chosen model or data (e.g. ``channels``
        for an fc net, digits-cnn on a 10-class set).
    """
    model = given.get("model", default_model)
    preset = get(model)
    cfg = {"model": model, "data": "digits", "data_dir": None, "grads": "auto", "seed": 0, "devices": 1}
    cfg.update(preset.defaults)
    cfg.update({k: v for k, v in given.items() if k in CONFIG_KEYS})
    if cfg["data"] not in NUM_CLASSES:
        raise InputError(f"{name('data')} must be one of {tuple(NUM_CLASSES)}, got {cfg['data']!r}")
    shape = preset.shape_options
    for dest in SHAPE_OPTIONS:
        if dest in given and dest not in shape:
            raise InputError(
                f"{name(dest)} does not apply to {name('model')} {model}; drop it or pick a model that has it"
            )
    for dest in ("hidden", "channels"):
        if dest in shape:
            low, high = shape[dest]
            n = len(cfg[dest])
            if n < low or (high is not None and n > high):
                want = f"exactly {low}" if low == high else f"at least {low}"
                raise InputError(f"{name(dest)}: {name('model')} {model} takes {want} value(s), got {n} ({cfg[dest]})")
    if "normalization" in shape and cfg["normalization"] not in shape["normalization"]:
        raise InputError(
            f"{name('normalization')} {cfg['normalization']}: {name('model')} {model} supports "
            f"{', '.join(shape['normalization'])}"
        )
    if preset.datasets is not None and cfg["data"] not in preset.datasets:
        raise InputError(
            f"{name('model')} {model} is {preset.about}; use it with {name('data')} {preset.datasets[0]}, "
            f"not {name('data')} {cfg['data']}"
        )
    cfg["loss"] = preset.loss
    cfg["num_classes"] = NUM_CLASSES[cfg["data"]]
    return cfg


def model_config(cfg: dict) -> dict:
    """The part of a configuration that decides the model's parameters (a checkpoint's identity)."""
    shape = get(cfg["model"]).shape_options
    return {k: cfg[k] for k in ("num_classes", "loss", *(k for k in SHAPE_OPTIONS if k in shape))}


def build_model(cfg: dict, ops: ModuleType = layers) -> Model:
    """The ``models.Model`` a resolved configuration describes, built with ``ops`` (layers or manual_grads)."""
    return get(cfg["model"]).build(cfg, ops)


def train_config(cfg: dict) -> train.TrainConfig:
    """The ``train.TrainConfig`` of a resolved configuration."""
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
        # --augment: random crops of the image zero-padded by 2 and left-right flips
        **(dict(crop_pad=2, flip_prob=0.5) if cfg.get("augment") else {}),
    )


def prepare(
    cfg: dict,
    *,
    template: bool = True,
    download: bool = True,
    progress: bool | None = None,
    name: Callable[[str], str] = _identity,
) -> dict:
    """Load the data and build the model of ``cfg`` (and, with ``template``, a fresh ``TrainState``).

    Every check that can fail happens here, before a caller writes anything: the device count,
    the data folder, the batch size against the training set (messages spell options with
    ``name``). ``download``/``progress`` go to ``data.load_dataset`` (fetch missing files, show a bar).

    Returns:
      ``{"split", "model", "loss_ops", "tconfig", "steps", "key", "input_shape"[, "template"]}``.
    """
    from jaxnets import data

    available = len(jax.devices())
    devices = cfg.get("devices", 1)
    if devices > available:
        raise InputError(
            f"{name('devices')} {devices}: only {available} device(s) available "
            f"({jax.devices()[0].platform}); use {name('devices')} <= {available}"
        )
    if cfg["batch_size"] % devices:
        raise InputError(f"{name('batch_size')} {cfg['batch_size']} must be divisible by {name('devices')} {devices}")
    if cfg["data_dir"] is not None and not Path(cfg["data_dir"]).expanduser().is_dir():
        raise InputError(
            f"{name('data_dir')} {cfg['data_dir']}: no such directory; pass the folder holding the "
            f"{cfg['data']} files (or its parent)"
        )
    split = data.load_dataset(cfg["data"], cfg["data_dir"], seed=cfg["seed"], download=download, progress=progress)
    num_train = len(split["y_train"])
    if cfg["batch_size"] > num_train:
        raise InputError(
            f"{name('batch_size')} {cfg['batch_size']} is larger than the training set ({num_train} examples "
            f"of {cfg['data']}); use {name('batch_size')} <= {num_train}"
        )
    ops, loss_ops = train.grad_namespaces(cfg["grads"])
    model = build_model(cfg, ops)
    tconfig = train_config(cfg)
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


def _layer_order(param: str) -> tuple:
    """Parameters in the order of the net: W1, b1, gamma1, beta1, W2, ..."""
    stem = param.rstrip("0123456789")
    order = ("W", "b", "gamma", "beta")
    return (int(param[len(stem) :] or 0), order.index(stem) if stem in order else 9, param)


def model_gradcheck(
    model: str | GradcheckVariant, seed: int = 0, *, loss: str | None = None, num_examples: int = 4
) -> dict:
    """Per-parameter errors of a small model's manual gradient against autodiff and numeric ones, in float64.

    The objective is ``data_loss + 0.5 * 0.1 * sum W^2`` on ``num_examples`` random examples
    (dropout with a fixed key, so both sides see the same masks); errors are ``grad_error``
    (exact zeros of the math compared absolutely).

    Args:
      model: a registered name (its ``gradcheck`` variant and loss) or a ``GradcheckVariant``.
      seed: seed of the parameters' perturbation and the inputs.
      loss: the loss (default: the preset's; ``"softmax"`` for a bare variant).

    Returns:
      ``{"input_shape", "loss", "step", "errors": {param: {"autodiff": e, "numeric": e}}}``.
    """
    if isinstance(model, str):
        preset = get(model)
        if preset.gradcheck is None:
            raise InputError(f"model {model!r} has no gradcheck variant")
        variant, loss = preset.gradcheck, loss or preset.loss
    else:
        variant, loss = model, loss or "softmax"
    factory, input_shape, h = variant
    with gradcheck.float64():
        rng = np.random.default_rng(seed)
        auto_model, manual_model = factory(layers), factory(manual_grads)
        params, state = auto_model.init(jax.random.key(seed + 1), input_shape)
        params = jax.tree_util.tree_map(
            lambda a: jnp.asarray(a, jnp.float64) + 0.1 * rng.standard_normal(a.shape), params
        )
        state = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), state)
        x = jnp.asarray(rng.standard_normal((num_examples, *input_shape)))
        y = jnp.asarray(rng.integers(0, 2 if loss == "squared_error" else 4, num_examples))
        key = jax.random.key(seed + 3)

        def objective(model, loss_ops):
            return lambda p: train.loss_fn(model, p, state, x, y, reg=0.1, key=key, loss=loss, loss_ops=loss_ops)[0]

        manual = jax.jit(jax.grad(objective(manual_model, manual_grads)))(params)
        auto = jax.jit(jax.grad(objective(auto_model, losses)))(params)
        numeric = gradcheck.numeric_grads(objective(auto_model, losses), (params,), (0,), h=h)[0]
        errors = {
            k: {
                "autodiff": gradcheck.grad_error(manual[k], auto[k], 1e-14),
                "numeric": gradcheck.grad_error(manual[k], numeric[k], 1e-9),
            }
            for k in sorted(params, key=_layer_order)
        }
    return {"input_shape": input_shape, "loss": loss, "step": h, "errors": errors}


# ------------------------------------------------------------------------------ the models
# Defaults tuned on sklearn digits.

_NORM_ALL = NORMALIZATIONS

register(
    Preset(
        "linear-svm",
        lambda cfg, ops: models.linear_classifier(cfg["num_classes"], ops=ops),
        {"optimizer": "momentum", "lr": 0.1, "reg": 1e-3, "epochs": 20, "batch_size": 100},
        {},
        loss="svm",
        gradcheck=GradcheckVariant(lambda ops: models.linear_classifier(4, ops=ops), (6,)),
    )
)
register(
    Preset(
        "linear-softmax",
        lambda cfg, ops: models.linear_classifier(cfg["num_classes"], ops=ops),
        {"optimizer": "momentum", "lr": 0.3, "reg": 1e-3, "epochs": 20, "batch_size": 100},
        {},
        gradcheck=GradcheckVariant(lambda ops: models.linear_classifier(4, ops=ops), (2, 3)),
    )
)
register(
    Preset(
        "two-layer",
        lambda cfg, ops: models.two_layer_net(cfg["hidden"][0], cfg["num_classes"], ops=ops),
        {
            "hidden": [100],
            "optimizer": "momentum",
            "lr": 0.3,
            "lr_decay": 0.95,
            "reg": 1e-3,
            "epochs": 20,
            "batch_size": 100,
        },
        {"hidden": (1, 1)},
        gradcheck=GradcheckVariant(lambda ops: models.two_layer_net(7, 4, weight_scale=0.5, ops=ops), (6,)),
    )
)
register(
    Preset(
        "fc",
        lambda cfg, ops: models.fc_net(
            cfg["hidden"],
            cfg["num_classes"],
            normalization=normalization_arg(cfg["normalization"]),
            dropout=cfg["dropout"],
            ops=ops,
        ),
        {
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
        {"hidden": (1, None), "normalization": _NORM_ALL, "dropout": True},
        gradcheck=GradcheckVariant(
            lambda ops: models.fc_net([6, 5], 4, normalization="batchnorm", dropout=0.3, ops=ops), (6,), 1e-5
        ),
    )
)
register(
    Preset(
        "digits-cnn",
        lambda cfg, ops: models.digits_cnn(tuple(cfg["hidden"]), ops=ops),
        {"hidden": [28, 36], "optimizer": "adam", "lr": 1e-2, "epochs": 20, "batch_size": 20},
        {"hidden": (2, 2)},
        loss="squared_error",
        gradcheck=GradcheckVariant(lambda ops: models.digits_cnn((5, 6), ops=ops), (1, 8, 8)),
        datasets=("digits-01",),
        about="the documents' binary 0-vs-1 net (one sigmoid output)",
    )
)
register(
    Preset(
        "three-layer-convnet",
        lambda cfg, ops: models.three_layer_convnet(
            cfg["channels"][0], cfg["filter_size"], cfg["hidden"][0], cfg["num_classes"], ops=ops
        ),
        {
            "channels": [32],
            "hidden": [100],
            "optimizer": "adam",
            "lr": 1e-3,
            "lr_decay": 0.95,
            "reg": 1e-3,
            "epochs": 15,
            "batch_size": 50,
        },
        {"hidden": (1, 1), "channels": (1, 1), "filter_size": True},
        gradcheck=GradcheckVariant(lambda ops: models.three_layer_convnet(3, 3, 6, 4, ops=ops), (2, 6, 6)),
    )
)
register(
    Preset(
        "convnet",
        lambda cfg, ops: models.convnet(
            cfg["channels"],
            cfg["hidden"],
            cfg["num_classes"],
            normalization=normalization_arg(cfg["normalization"]),
            kernel_size=cfg["filter_size"],
            dropout=cfg["dropout"],
            ops=ops,
        ),
        {
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
        {
            "hidden": (0, None),
            "channels": (1, None),
            "normalization": ("none", "batchnorm"),
            "dropout": True,
            "filter_size": True,
        },
        gradcheck=GradcheckVariant(lambda ops: models.convnet((3, 4), (5,), 4, dropout=0.2, ops=ops), (2, 8, 8), 1e-5),
    )
)
