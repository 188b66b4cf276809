"""TensorBoard event files for a run directory, when the optional ``tensorboardX`` is installed.

``pip install -e '.[tensorboard]'`` adds tensorboardX (pure Python + protobuf, no TensorFlow);
``tensorboard --logdir runs`` then shows every run. Without it :func:`open_writer` returns None
and every other function here does nothing, silently: the event files are an extra view of what
``metrics.json`` and the PNGs already hold.

Tags written:

- ``train/loss``: the training loss of every iteration (step = iteration, counted from 1);
- ``epoch/train_accuracy``, ``epoch/val_accuracy``, ``epoch/learning_rate`` (step = epoch);
- ``final/<metric>`` and the HParams plugin's record (hyperparameters with the final metrics);
- images ``curves`` and ``weights`` (the run's PNGs); a sweep adds ``sweep`` and one HParams
  run per configuration under ``<out>/hparams/``.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["available", "open_writer", "log_epoch", "log_final", "log_image", "log_sweep", "hparam_value"]

#: Final metrics copied from ``metrics.json`` into ``final/<name>`` scalars and the HParams record.
FINAL_METRICS = ("test_accuracy", "val_accuracy", "train_accuracy")


def available() -> bool:
    """True when tensorboardX can be imported (the ``tensorboard`` extra is installed)."""
    return importlib.util.find_spec("tensorboardX") is not None


def open_writer(run_dir: str | os.PathLike):
    """A ``tensorboardX.SummaryWriter`` writing ``events.out.tfevents.*`` into ``run_dir`` (None without it).

    Args:
        run_dir: the run directory (created if needed).

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     w = open_writer(d)
    ...     ok = w is None or (w.close() is None and any(n.startswith("events.out.tfevents") for n in os.listdir(d)))
    >>> ok
    True
    """
    if not available():
        return None
    from tensorboardX import SummaryWriter

    # flush_secs: a run watched live shows each epoch without waiting for the default 2 minutes
    return SummaryWriter(logdir=str(run_dir), flush_secs=10)


def log_epoch(writer, history: Mapping[str, Any], steps: int) -> None:
    """Write the newest epoch of ``history``: its ``steps`` per-iteration losses and epoch scalars.

    Args:
        writer: from :func:`open_writer`; None does nothing.
        history: ``fit``'s history (``loss`` per iteration; ``train_acc``, ``val_acc``, ``lr`` per epoch).
        steps: iterations in that epoch (the last ``steps`` entries of ``history["loss"]``).
    """
    if writer is None:
        return
    losses = history["loss"]
    first = len(losses) - steps
    for i, value in enumerate(losses[first:], start=first + 1):
        writer.add_scalar("train/loss", float(value), i)
    epoch = len(history["val_acc"])
    for tag, key in (("train_accuracy", "train_acc"), ("val_accuracy", "val_acc"), ("learning_rate", "lr")):
        if len(history.get(key, ())) >= epoch > 0:
            writer.add_scalar(f"epoch/{tag}", float(history[key][epoch - 1]), epoch)
    writer.flush()


def hparam_value(value: Any) -> bool | int | float | str:
    """A configuration value as the HParams plugin takes it (bool, int, float or str).

    >>> hparam_value([100, 100]), hparam_value(None), hparam_value(0.5)
    ('[100, 100]', 'none', 0.5)
    """
    if isinstance(value, (bool, int, float, str)):
        return value
    if value is None:
        return "none"
    return str(value)


def _write_hparams(writer, hparams: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
    from tensorboardX.summary import hparams as hparams_summary

    for summary in hparams_summary({k: hparam_value(v) for k, v in hparams.items()}, dict(metrics)):
        writer.file_writer.add_summary(summary)


def log_image(writer, tag: str, png: str | os.PathLike, step: int = 0) -> None:
    """Add the PNG file ``png`` as image ``tag``; None or a missing file does nothing."""
    if writer is None or not Path(png).is_file():
        return
    import matplotlib.image

    image = matplotlib.image.imread(png)  # (H, W, 3 or 4) floats in [0, 1]
    writer.add_image(tag, image[..., :3], step, dataformats="HWC")


def log_final(
    writer,
    config: Mapping[str, Any],
    metrics: Mapping[str, Any],
    images: Mapping[str, str | os.PathLike] = (),
) -> None:
    """Write the final metrics (``final/<name>`` and the HParams record of ``config``), the images, and close.

    Args:
        writer: from :func:`open_writer`; None does nothing.
        config: the run's configuration (the HParams record's hyperparameters).
        metrics: ``metrics.json``'s dict; the entries named in :data:`FINAL_METRICS` that are numbers are written.
        images: ``{tag: PNG path}``, e.g. ``{"curves": run/"curves.png"}``.
    """
    if writer is None:
        return
    step = int(metrics.get("epochs_completed") or 0)
    final = {f"final/{k}": float(metrics[k]) for k in FINAL_METRICS if isinstance(metrics.get(k), (int, float))}
    _write_hparams(writer, config, final)
    for tag, value in final.items():
        writer.add_scalar(tag, value, step)
    for tag, png in dict(images).items():
        log_image(writer, tag, png, step)
    writer.close()


def log_sweep(out: str | os.PathLike, config: Mapping[str, Any], results: list[dict], png=None) -> None:
    """One HParams run per configuration under ``out/hparams/lr_<lr>_reg_<reg>``, and the heat map in ``out``.

    Args:
        out: the sweep's output directory.
        config: the shared configuration (each run adds its own ``lr`` and ``reg``).
        results: ``[{"lr", "reg", "train_accuracy", "val_accuracy"}, ...]`` as in ``sweep.json``.
        png: the sweep's heat map, written as image ``sweep``.
    """
    if not available():
        return
    out = Path(out)
    shared = {k: v for k, v in config.items() if k not in ("lr", "reg")}
    for r in results:
        writer = open_writer(out / "hparams" / f"lr_{r['lr']:g}_reg_{r['reg']:g}")
        final = {f"final/{k}": float(r[k]) for k in ("train_accuracy", "val_accuracy") if r.get(k) is not None}
        _write_hparams(writer, {**shared, "lr": r["lr"], "reg": r["reg"]}, final)
        for tag, value in final.items():
            writer.add_scalar(tag, value, 0)
        writer.close()
    writer = open_writer(out)
    if png is not None:
        log_image(writer, "sweep", png)
    writer.close()
