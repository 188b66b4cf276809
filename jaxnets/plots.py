"""PNG plots of a run: learning curves, first-layer weights, sweep heat map, confusion matrix.

Each function takes plain data and a path, draws on its own ``matplotlib.figure.Figure`` (Agg
canvas, no pyplot and no global backend switch) and writes the PNG atomically.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from jaxnets.files import atomic_write

__all__ = ["plot_curves", "first_layer_images", "plot_image_grid", "plot_sweep", "plot_confusion", "confusion_matrix"]


def _save(fig: Figure, path: str | os.PathLike, dpi: int = 90) -> Path:
    FigureCanvasAgg(fig)
    return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi))


def plot_curves(history: dict, path: str | os.PathLike, title: str = "") -> Path:
    """Two panels: the training loss per iteration, and train/val accuracy per epoch.

    Args:
      history: ``fit``'s history: ``loss`` (one entry per step), ``train_acc`` and ``val_acc``
        (one per epoch).
      path: the PNG to write.
      title: figure title.

    >>> import tempfile, os
    >>> h = {"loss": [2.3, 1.0, 0.5, 0.4], "train_acc": [0.5, 0.9], "val_acc": [0.4, 0.8]}
    >>> with tempfile.TemporaryDirectory() as d:
    ...     plot_curves(h, os.path.join(d, "c.png")).stat().st_size > 0
    True
    """
    fig = Figure(figsize=(10, 3.8))
    loss_ax, acc_ax = fig.subplots(1, 2)
    loss = np.asarray(history.get("loss", []), dtype=float)
    loss_ax.plot(np.arange(1, len(loss) + 1), loss, lw=0.8, alpha=0.6 if len(loss) > 50 else 1.0)
    if len(loss) > 50:  # the raw minibatch losses are noisy: overlay a moving average
        k = max(len(loss) // 50, 2)
        smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
        loss_ax.plot(np.arange(k, len(loss) + 1), smooth, lw=1.5, label=f"mean of {k}")
        loss_ax.legend()
    loss_ax.set(title="training loss", xlabel="iteration", ylabel="loss")
    if len(loss) and np.all(loss[np.isfinite(loss)] > 0) and np.nanmax(loss) / max(np.nanmin(loss), 1e-12) > 50:
        loss_ax.set_yscale("log")
    epochs = np.arange(1, len(history.get("train_acc", [])) + 1)
    acc_ax.plot(epochs, history.get("train_acc", []), "o-", ms=3, label="train")
    acc_ax.plot(epochs, history.get("val_acc", []), "o-", ms=3, label="val")
    acc_ax.set(title="classification accuracy", xlabel="epoch", ylabel="accuracy")
    acc_ax.legend(loc="lower right")
    acc_ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def first_layer_images(w, input_shape: Sequence[int]) -> np.ndarray:
    """The first layer's weights as images ``(K, C, H, W)``.

    Args:
      w: affine weights ``(D, M)`` with ``D = prod(input_shape)`` (one image per hidden unit or
        class), or conv filters ``(F, C, HH, WW)``.
      input_shape: the shape of one example, ``(C, H, W)`` (or ``(D,)``: shown as a row).

    >>> first_layer_images(np.zeros((64, 10)), (1, 8, 8)).shape
    (10, 1, 8, 8)
    >>> first_layer_images(np.zeros((4, 3, 5, 5)), (3, 32, 32)).shape
    (4, 3, 5, 5)
    """
    w = np.asarray(w)
    if w.ndim == 4:
        return w
    shape = tuple(input_shape) if len(input_shape) == 3 else (1, 1, math.prod(input_shape))
    return w.T.reshape(w.shape[1], *shape)


def _mosaic(images: np.ndarray, cols: int, pad: int = 1) -> np.ndarray:
    """Images ``(K, C, H, W)``, each rescaled to [0, 1], tiled into one ``(rows*(H+pad), cols*(W+pad), C)``
    array on a white background."""
    K, C, H, W = images.shape
    rows = int(math.ceil(K / cols))
    canvas = np.ones((rows * (H + pad) + pad, cols * (W + pad) + pad, C))
    for k, img in enumerate(images):
        lo, hi = img.min(), img.max()
        img = (img - lo) / (hi - lo) if hi > lo else np.full_like(img, 0.5)
        r, c = divmod(k, cols)
        canvas[pad + r * (H + pad) : pad + r * (H + pad) + H, pad + c * (W + pad) : pad + c * (W + pad) + W] = (
            img.transpose(1, 2, 0)
        )
    return canvas


def plot_image_grid(images, path: str | os.PathLike, title: str = "", max_images: int = 64) -> Path:
    """A grid of images ``(K, C, H, W)``, each rescaled to its own min..max.

    Three channels are shown in colour, one in grey; other channel counts show their mean.

    >>> import tempfile, os
    >>> with tempfile.TemporaryDirectory() as d:
    ...     plot_image_grid(np.random.default_rng(0).normal(size=(5, 1, 8, 8)), os.path.join(d, "w.png")).exists()
    True
    """
    images = np.asarray(images, dtype=float)
    if len(images) > max_images:
        title = f"{title} (first {max_images} of {len(images)})"
        images = images[:max_images]
    if images.shape[1] not in (1, 3):
        images = images.mean(axis=1, keepdims=True)
    K = len(images)
    cols = min(K, int(math.ceil(math.sqrt(K * 1.5))))
    mosaic = _mosaic(images, cols)
    rows = int(math.ceil(K / cols))
    fig = Figure(figsize=(min(0.9 * cols, 12) + 0.4, min(0.9 * rows, 10) + (0.6 if title else 0.2)))
    ax = fig.subplots()
    ax.imshow(mosaic[..., 0] if mosaic.shape[-1] == 1 else mosaic, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_sweep(learning_rates, regs, val_acc, path: str | os.PathLike, title: str = "validation accuracy") -> Path:
    """Heat map of ``val_acc`` over the (learning rate x reg) grid.

    Args:
      learning_rates: the distinct learning rates (rows), ascending.
      regs: the distinct regularisation strengths (columns), ascending.
      val_acc: ``(len(learning_rates), len(regs))`` accuracies.
    """
    val_acc = np.asarray(val_acc, dtype=float)
    fig = Figure(figsize=(1.3 * len(regs) + 3, 0.55 * len(learning_rates) + 2))
    ax = fig.subplots()
    im = ax.imshow(val_acc, cmap="viridis", aspect="auto", origin="lower")
    ax.set_xticks(range(len(regs)), [f"{r:.1e}" for r in regs])
    ax.set_yticks(range(len(learning_rates)), [f"{lr:.1e}" for lr in learning_rates])
    ax.set(xlabel="regularization strength", ylabel="learning rate", title=title)
    best = np.unravel_index(np.nanargmax(val_acc), val_acc.shape) if np.isfinite(val_acc).any() else None
    for (i, j), acc in np.ndenumerate(val_acc):
        ax.text(
            j,
            i,
            f"{acc:.3f}",
            ha="center",
            va="center",
            fontsize=8,
            color="black" if (i, j) == best or acc > np.nanmean(val_acc) else "white",
            fontweight="bold" if (i, j) == best else "normal",
        )
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    return _save(fig, path)


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """``M[i, j]`` = number of examples of class ``i`` predicted as ``j``.

    >>> confusion_matrix([0, 1, 1], [0, 0, 1], 2).tolist()
    [[1, 0], [1, 1]]
    """
    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return m


def plot_confusion(matrix, path: str | os.PathLike, class_names: Sequence[str] | None = None, title: str = "") -> Path:
    """The confusion matrix (true class down, predicted class across) with counts in the cells."""
    matrix = np.asarray(matrix)
    C = len(matrix)
    names = list(class_names) if class_names is not None else [str(i) for i in range(C)]
    fig = Figure(figsize=(0.55 * C + 2.5, 0.5 * C + 2))
    ax = fig.subplots()
    im = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(
        range(C),
        names,
        rotation=45 if max(map(len, names)) > 2 else 0,
        ha="right" if max(map(len, names)) > 2 else "center",
    )
    ax.set_yticks(range(C), names)
    ax.set(xlabel="predicted", ylabel="true", title=title or "confusion matrix")
    for (i, j), n in np.ndenumerate(matrix):
        if n:
            ax.text(
                j, i, str(n), ha="center", va="center", fontsize=8, color="white" if n > matrix.max() / 2 else "black"
            )
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    return _save(fig, path)
