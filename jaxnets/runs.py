"""Run directories of named models: what a run records, how it resumes, what it reports.

A run directory holds ``config.json`` (the resolved configuration and how it was asked for),
``checkpoint.npz`` and ``metrics.json``; a sweep directory holds ``sweep.json``. These functions
check a directory before anything is written to it, so bad input never damages an earlier run.
Messages spell options with ``name`` (the command passes one that writes ``--out`` for ``out``).
"""

from __future__ import annotations

import datetime
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from jaxnets import checkpoints, distributed, files, plots, presets, tblog, train
from jaxnets.errors import InputError

__all__ = [
    "RESUMABLE",
    "read_json",
    "fresh_out",
    "default_out",
    "config_record",
    "resume_config",
    "check_resume",
    "start_train",
    "run_train",
    "metrics",
    "parse_grid",
    "start_sweep",
    "sweep_summary",
    "write_sweep",
    "evaluate",
    "write_outputs",
]

#: Options that may differ when a run is resumed: they do not change what is computed.
RESUMABLE = frozenset({"epochs", "data_dir", "devices"})


def _identity(option: str) -> str:
    return option


def read_json(path: Path) -> dict:
    """The JSON object in ``path`` (``InputError`` if it is corrupt)."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON ({e}); it is corrupt") from None


def fresh_out(out: Path, markers: tuple[str, ...], resume_hint: bool, *, name: Callable = _identity) -> Path:
    """``out`` after checking it holds no earlier run (none of ``markers``), so nothing gets overwritten."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{name('out')} {out} is a file, not a directory; choose another {name('out')}")
    found = [m for m in markers if (out / m).exists()]
    if found:
        hint = f"pass {name('resume')} to continue it, or " if resume_hint else ""
        raise InputError(f"{name('out')} {out} already holds a run ({found[0]}); {hint}choose another {name('out')}")
    return out


def default_out(prefix: str, root: Path = Path("runs")) -> Path:
    """``root/<prefix>-<timestamp>``, numbered if that exists."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out, n = root / f"{prefix}-{stamp}", 2
    while out.exists():
        out, n = root / f"{prefix}-{stamp}-{n}", n + 1
    return out


def config_record(cfg: dict, given: dict, argv: list[str], command: str) -> dict:
    """The contents of ``config.json``: the resolved configuration and what was given."""
    from jaxnets import __version__

    return {
        "command": command,
        "argv": argv,
        "jaxnets_version": __version__,
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "given": given,
        "config": cfg,
        "model_config": presets.model_config(cfg),
    }


def resume_config(out: Path, given: dict, *, name: Callable = _identity) -> tuple[dict, dict]:
    """The saved configuration of the run in ``out`` updated with the ``RESUMABLE`` options in ``given``,
    and its record; any other option given must agree with the saved one."""
    path = Path(out) / "config.json"
    if not path.is_file():
        raise InputError(f"{name('resume')}: {out} holds no run (no config.json); start one without {name('resume')}")
    record = read_json(path)
    saved = record.get("config")
    if not isinstance(saved, dict) or "model" not in saved:
        raise InputError(f"{path}: has no 'config' of a jaxnets train run; it is corrupt")
    for dest, value in given.items():
        if dest not in RESUMABLE and json.loads(json.dumps(value)) != saved.get(dest):
            raise InputError(
                f"{name(dest)} {value} conflicts with the saved run's {dest}={saved.get(dest)} in {path}; "
                f"drop it to resume (only {name('epochs')} may change), or start a new run with another {name('out')}"
            )
    return {**saved, **{k: v for k, v in given.items() if k in RESUMABLE}}, record


def check_resume(ckpt: Path, cfg: dict, *, resume: bool, name: Callable = _identity) -> None:
    """Check, before any data is loaded, that ``ckpt`` is a readable checkpoint of ``cfg``'s model
    (when ``resume``: that it exists and has fewer than ``cfg["epochs"]`` epochs)."""
    if resume and not Path(ckpt).is_file():
        raise InputError(
            f"{name('resume')}: {Path(ckpt).parent} has no {checkpoints.CHECKPOINT_NAME}; start a new run with "
            f"another {name('out')}"
        )
    meta = checkpoints.read_checkpoint_meta(ckpt)
    checkpoints.check_model(ckpt, meta, cfg["model"], presets.model_config(cfg))
    if resume and meta["epoch"] >= cfg["epochs"]:
        done = meta["epoch"]
        raise InputError(
            f"{name('resume')}: the run in {Path(ckpt).parent} already has {done} epochs; pass {name('epochs')} N "
            f"with N > {done} to train longer"
        )


def start_train(
    given: dict,
    argv: list[str],
    out: str | Path | None = None,
    *,
    resume: bool = False,
    download: bool = True,
    progress: bool | None = None,
    name: Callable = _identity,
) -> dict:
    """Set up a train run: a fresh one in ``out`` (its ``config.json`` and first checkpoint written), or the
    run in ``out`` continued from its checkpoint when ``resume`` (its record gains a ``resumed`` entry).

    Across processes only the writer (process 0) writes files, and each process keeps its share of the
    training set.

    Args:
      given: the configuration options asked for (``presets.CONFIG_KEYS``).
      argv: the command line, recorded in ``config.json``.
      out: the run directory (default ``runs/<model>-<data>-<timestamp>``; required when ``resume``).

    Returns:
      ``{"config", "out", "checkpoint", "identity", "prep", "split", "state", "writer", "rows_per_process",
      "device", "started"}``: what ``run_train`` needs.
    """
    started = time.perf_counter()
    writer = distributed.is_writer()  # across processes, only process 0 writes files
    if resume:
        out = Path(out)
        cfg, record = resume_config(out, given, name=name)
    else:
        cfg = presets.resolve_config(given, name=name)
        if distributed.is_multiprocess() and "devices" not in given:
            cfg["devices"] = jax.device_count()
        out = Path(out) if out else default_out(f"{cfg['model']}-{cfg['data']}")
        if writer:  # the others may start after process 0 made the directory
            out = fresh_out(out, ("config.json", checkpoints.CHECKPOINT_NAME, "metrics.json"), True, name=name)
        record = config_record(cfg, given, argv, "train")
    ckpt = out / checkpoints.CHECKPOINT_NAME
    identity = dict(model_name=cfg["model"], model_config=presets.model_config(cfg), extra={"config": cfg})
    if resume:
        check_resume(ckpt, cfg, resume=True, name=name)
    prep = presets.prepare(cfg, download=download, progress=progress, name=name)
    if resume:
        ts, _ = checkpoints.load_checkpoint(ckpt, prep["template"], model_name=cfg["model"],
                                            model_config=identity["model_config"])
        ts.history.pop("stopped", None)
        at = datetime.datetime.now().isoformat(timespec="seconds")
        record = {**record, "config": cfg, "resumed": [*record.get("resumed", []),
                                                       {"from_epoch": ts.epoch, "argv": argv, "at": at}]}
        if writer:
            files.write_json(out / "config.json", record)
    else:
        ts = prep["template"]
        if writer:
            out.mkdir(parents=True, exist_ok=True)
            files.write_json(out / "config.json", record)
            checkpoints.save_checkpoint(ckpt, ts, **identity)
    split = distributed.shard_training_set(prep.pop("split"), cfg["devices"], cfg["batch_size"])
    held = distributed.rows_held(split["X_train"]) if distributed.is_multiprocess() else None
    return {"config": cfg, "out": out, "checkpoint": ckpt, "identity": identity, "prep": prep, "split": split,
            "state": ts, "writer": writer, "rows_per_process": held, "device": str(jax.devices()[0]),
            "started": started}


def run_train(run: dict, on_epoch: Callable | None = None) -> dict:
    """Train the run set up by ``start_train``: a checkpoint (and TensorBoard events) after every epoch,
    then ``metrics.json``, ``curves.png`` and ``weights.png`` (files by the writer process only).

    Args:
      on_epoch: called as ``on_epoch(ts, record)`` after each epoch's checkpoint (e.g. to report progress).

    Returns:
      ``{"state": the final TrainState, "metrics": the contents of metrics.json, "test_accuracy"}``.
    """
    cfg, prep, split, writer = run["config"], run["prep"], run["split"], run["writer"]
    tb = tblog.open_writer(run["out"]) if writer else None  # None without the tensorboard extra

    def epoch_done(ts, rec):
        if writer:
            checkpoints.save_checkpoint(run["checkpoint"], ts, **run["identity"])
        tblog.log_epoch(tb, ts.history, rec["steps"])
        if on_epoch is not None:
            on_epoch(ts, rec)

    ts = train.fit(prep["model"], split, prep["tconfig"], key=prep["key"], loss_ops=prep["loss_ops"],
                   resume=run["state"], on_epoch=epoch_done, devices=cfg["devices"])
    test_acc = train.accuracy(prep["model"], ts.best_params, ts.best_state, split["X_test"], split["y_test"])
    result = metrics(cfg, ts, test_acc, time.perf_counter() - run["started"], run["device"])
    if run["rows_per_process"] is not None:
        result["train_rows_per_process"] = run["rows_per_process"]  # padded to split evenly over the devices
    if writer:
        images = write_outputs(run["out"], cfg, ts, result, prep["input_shape"])
        tblog.log_final(tb, cfg, result, images)
    return {"state": ts, "metrics": result, "test_accuracy": test_acc}


def metrics(cfg: dict, ts: train.TrainState, test_acc: float, wall: float, device: str) -> dict:
    """The contents of ``metrics.json`` for a finished (or stopped) run."""
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


def parse_grid(text: str, option: str, *, positive: bool, name: Callable = _identity) -> list[float]:
    """A sweep axis: ``"1e-3,2e-3"`` or ``"log:START:STOP:N"`` (N log-spaced values, both ends included).

    >>> parse_grid("log:1e-4:1e-2:3", "lr", positive=True)
    [0.0001, 0.001, 0.01]
    >>> parse_grid("0,1e-3", "reg", positive=False)
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
        raise InputError(
            f"{name(option)}: expected a comma-separated list like 1e-3,1e-2 or log:START:STOP:N with "
            f"START, STOP > 0, got {text!r}"
        ) from None
    bad = [v for v in values if not math.isfinite(v) or (v <= 0 if positive else v < 0)]
    if not values or bad:
        raise InputError(f"{name(option)}: every value must be {'> 0' if positive else '>= 0'}, got {text!r}")
    return sorted(set(values))


def sweep_summary(result: dict, lrs: list[float], regs: list[float], model, split: dict) -> dict:
    """Rows, val-accuracy grid and best configuration (with its test accuracy) of ``train.sweep``'s result.

    Grid values are reported as asked for (float32 gives back e.g. 0.0010000000474974513).
    """
    as_given = lambda v, grid: min(grid, key=lambda g: abs(g - v))
    columns = (result[k].tolist() for k in ("learning_rate", "reg", "train_acc", "val_acc"))
    rows = sorted((as_given(lr, lrs), as_given(reg, regs), tr, va) for lr, reg, tr, va in zip(*columns, strict=True))
    val = np.nan_to_num(np.asarray(result["val_acc"], dtype=float), nan=-1.0)
    best = int(np.argmax(val))
    pick = lambda tree: jax.tree_util.tree_map(lambda a: a[best], tree)
    test_acc = train.accuracy(model, pick(result["params"]), pick(result["state"]), split["X_test"], split["y_test"])
    grid = np.full((len(lrs), len(regs)), np.nan)
    for lr, reg, _, val_acc in rows:
        grid[lrs.index(lr), regs.index(reg)] = val_acc
    return {
        "rows": rows,
        "grid": grid,
        "results": [{"lr": lr, "reg": reg, "train_accuracy": t, "val_accuracy": v} for lr, reg, t, v in rows],
        "best": {
            "lr": as_given(float(result["learning_rate"][best]), lrs),
            "reg": as_given(float(result["reg"][best]), regs),
            "val_accuracy": float(val[best]),
            "train_accuracy": float(result["train_acc"][best]),
            "test_accuracy": test_acc,
        },
    }


def start_sweep(
    given: dict,
    lr_text: str | None,
    reg_text: str,
    out: str | Path | None = None,
    *,
    download: bool = True,
    progress: bool | None = None,
    name: Callable = _identity,
) -> dict:
    """Set up a learning rate x L2 strength sweep: its configuration (``lr`` and ``reg`` the parsed grids),
    its checked output directory and its prepared model and data.

    Args:
      given: the configuration options asked for, without ``lr`` and ``reg``.
      lr_text, reg_text: the grids as ``parse_grid`` reads them; ``lr_text`` None: 5 log-spaced values from
        1/10 to 10x the model's default lr.
      out: the output directory (default ``runs/sweep-<model>-<data>-<timestamp>``).

    Returns:
      ``{"config", "given" (with the grids as text), "out", "prep", "started"}``: what ``write_sweep`` needs.
    """
    started = time.perf_counter()
    cfg = presets.resolve_config(given, default_model="two-layer", name=name)
    lr_text = lr_text or f"log:{cfg['lr'] / 10:g}:{cfg['lr'] * 10:g}:5"
    lrs = parse_grid(lr_text, "lr", positive=True, name=name)
    regs = parse_grid(reg_text, "reg", positive=False, name=name)
    cfg.update(lr=lrs, reg=regs)
    out = Path(out) if out else default_out(f"sweep-{cfg['model']}-{cfg['data']}")
    out = fresh_out(out, ("sweep.json", "config.json"), resume_hint=False, name=name)
    prep = presets.prepare({**cfg, "lr": lrs[0], "reg": regs[0]}, template=False, download=download,
                           progress=progress, name=name)
    return {"config": cfg, "given": {**given, "lr": lr_text, "reg": reg_text}, "out": out, "prep": prep,
            "started": started}


def write_sweep(sweep: dict, summary: dict, result: dict, argv: list[str]) -> dict:
    """Write a sweep's ``sweep.json`` and ``sweep.png`` (and TensorBoard events) into its directory.

    Args:
      sweep: ``start_sweep``'s result; ``summary``: ``sweep_summary``'s; ``result``: ``train.sweep``'s.
      argv: the command line, recorded in ``sweep.json``.

    Returns:
      the contents of ``sweep.json``.
    """
    out, cfg = sweep["out"], sweep["config"]
    out.mkdir(parents=True, exist_ok=True)
    record = {
        **config_record(cfg, sweep["given"], argv, "sweep"),
        "results": summary["results"],
        "best": summary["best"],
        "train_time_s": float(result["time"]),
        "wall_time_s": time.perf_counter() - sweep["started"],
        "device": str(jax.devices()[0]),
    }
    files.write_json(out / "sweep.json", record)
    plots.plot_sweep(cfg["lr"], cfg["reg"], summary["grid"], out / "sweep.png",
                     title=f"{cfg['model']} on {cfg['data']}: val accuracy after {cfg['epochs']} epochs")
    tblog.log_sweep(out, cfg, summary["results"], out / "sweep.png")
    return record


def evaluate(
    checkpoint: str | Path,
    which: str = "best",
    *,
    data_dir: str | None = None,
    download: bool = True,
    name: Callable = _identity,
) -> dict:
    """Test accuracy and confusion matrix of a saved run, its model rebuilt from the run's configuration.

    Args:
      checkpoint: a run directory or its ``checkpoint.npz`` (a copied-out checkpoint carries its config).
      which: ``"best"`` (best-validation weights) or ``"last"`` (the last epoch's).
      data_dir: where the data lives now, if it moved.

    Returns:
      ``{"config", "epoch", "accuracy", "confusion" (C, C) int, "class_names" (or None), "checkpoint"}``.
    """
    from jaxnets.data import CIFAR10_CLASSES, FASHION_MNIST_CLASSES

    path = Path(checkpoint)
    ckpt = path / checkpoints.CHECKPOINT_NAME if path.is_dir() else path
    if not ckpt.is_file():
        what = "checkpoint in that directory" if path.is_dir() else "file"
        raise InputError(f"{name('checkpoint')} {path}: no such {what}; pass a run directory or its "
                         f"{checkpoints.CHECKPOINT_NAME}")
    if which not in ("best", "last"):
        raise InputError(f"{name('which')}: expected 'best' or 'last', got {which!r}")
    source = ckpt.parent / "config.json"
    if source.is_file():
        cfg = read_json(source).get("config")
    else:  # a checkpoint copied out of its run directory still knows its configuration
        cfg, source = checkpoints.read_checkpoint_meta(ckpt).get("extra", {}).get("config"), ckpt
    if not isinstance(cfg, dict) or cfg.get("model") not in presets.names():
        raise InputError(f"{source}: holds no jaxnets train configuration; pass a directory written by jaxnets train")
    cfg = {**cfg, "devices": 1, **({"data_dir": data_dir} if data_dir is not None else {})}
    check_resume(ckpt, cfg, resume=False, name=name)
    prep = presets.prepare(cfg, download=download, name=name)
    ts, _ = checkpoints.load_checkpoint(ckpt, prep["template"], model_name=cfg["model"],
                                        model_config=presets.model_config(cfg))
    params, state = (ts.best_params, ts.best_state) if which == "best" else (ts.params, ts.state)
    X, y = prep["split"]["X_test"], prep["split"]["y_test"]
    scores = train.predict(prep["model"], params, state, X, batch_size=min(1000, len(y)))
    preds = np.asarray(train.labels_from_scores(scores))
    return {
        "config": cfg,
        "epoch": ts.epoch,
        "accuracy": float(np.mean(preds == y)),
        "confusion": plots.confusion_matrix(y, preds, cfg["num_classes"]),
        "class_names": {"fashion-mnist": FASHION_MNIST_CLASSES, "cifar10": CIFAR10_CLASSES}.get(cfg["data"]),
        "checkpoint": ckpt,
    }


def write_outputs(out: Path, cfg: dict, ts: train.TrainState, metrics: dict, input_shape) -> dict[str, Path]:
    """Write a finished run's ``metrics.json``, ``curves.png`` and ``weights.png`` into ``out``.

    Returns:
      ``{"curves": path, "weights": path}``: the two images.
    """
    files.write_json(out / "metrics.json", metrics)
    title = f"{cfg['model']} on {cfg['data']}: test accuracy {metrics['test_accuracy']:.4f}"
    curves = plots.plot_curves(ts.history, out / "curves.png", title=title)
    weights = np.asarray(ts.best_params["W1"])
    kind = "filters" if weights.ndim == 4 else "weights"
    images = plots.first_layer_images(weights, input_shape)
    grid = plots.plot_image_grid(images, out / "weights.png", title=f"{cfg['model']}: first-layer {kind}")
    return {"curves": curves, "weights": grid}
