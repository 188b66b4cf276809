"""Bad input to the public layer and loss functions raises a clear error at trace time."""

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import pytest

from jaxnets import layers, losses, manual_grads

# The autodiff functions (layers + losses) and their manual twins, under one set of names.
AUTODIFF = SimpleNamespace(**{n: getattr(m, n) for m in (layers, losses) for n in m.__all__})


@pytest.mark.parametrize("ops", [AUTODIFF, manual_grads], ids=["autodiff", "manual_grads"])
@pytest.mark.parametrize(
    "call, error, match",
    [
        (
            lambda o: o.affine(jnp.ones((2, 3, 4)), jnp.ones((10, 5)), jnp.zeros(5)),
            ValueError,
            r"D = prod\(x.shape\[1:\]\) = 12.*got w of shape \(10, 5\)",
        ),
        (
            lambda o: o.affine(jnp.ones((2, 12)), jnp.ones((12, 5)), jnp.zeros(4)),
            ValueError,
            r"b must have shape \(5,\), got shape \(4,\)",
        ),
        (
            lambda o: o.affine(jnp.ones((2, 12), int), jnp.ones((12, 5)), jnp.zeros(5)),
            TypeError,
            "x must be a floating-point array",
        ),
        (
            lambda o: o.conv2d(jnp.ones((1, 3, 8, 8)), jnp.ones((2, 3, 3, 3)), jnp.zeros(2), 2, 0),
            ValueError,
            r"stride=2, pad=0 does not tile.*8x8",
        ),
        (
            lambda o: o.conv2d(jnp.ones((1, 3, 8, 8)), jnp.ones((2, 4, 3, 3)), jnp.zeros(2)),
            ValueError,
            "x has 3 channels.*expects C=4",
        ),
        (
            lambda o: o.conv2d(jnp.ones((3, 8, 8)), jnp.ones((2, 3, 3, 3)), jnp.zeros(2)),
            ValueError,
            r"x must have rank 4 \(N, C, H, W\), got shape \(3, 8, 8\)",
        ),
        (
            lambda o: o.conv2d(jnp.ones((1, 3, 8, 8)), jnp.ones((2, 3, 3, 3)), jnp.zeros(2), 0, 1),
            ValueError,
            "stride must be an int >= 1, got 0",
        ),
        (
            lambda o: o.max_pool2d(jnp.ones((1, 1, 2, 2)), 3, 1),
            ValueError,
            r"pool window 3x3 is larger than the \(padded\) input 2x2",
        ),
        (
            lambda o: o.avg_pool2d(jnp.ones((1, 1, 5, 5)), 2, 2),
            ValueError,
            r"does not tile input of height x width 5x5",
        ),
        (
            lambda o: o.dropout(jnp.ones(3), jax.random.key(0), 1.0),
            ValueError,
            r"rate \(the drop probability\) must be a number in \[0, 1\), got 1.0",
        ),
        (lambda o: o.dropout(jnp.ones(3), jax.random.key(0), -0.1), ValueError, r"in \[0, 1\), got -0.1"),
        (lambda o: o.dropout(jnp.ones(3), None, 0.5), ValueError, "needs a PRNG key"),
        (
            lambda o: o.batchnorm(jnp.ones((4, 3)), jnp.ones(2), jnp.zeros(3)),
            ValueError,
            r"gamma must have shape \(3,\), got shape \(2,\)",
        ),
        (
            lambda o: o.groupnorm(jnp.ones((2, 6, 3, 3)), jnp.ones(6), jnp.zeros(6), 4),
            ValueError,
            "groups must be a positive int dividing C=6, got 4",
        ),
        (
            lambda o: o.softmax_loss(jnp.ones((4, 3)), jnp.zeros(4)),
            TypeError,
            "labels y must be an integer array.*float32",
        ),
        (
            lambda o: o.softmax_loss(jnp.ones((4, 3)), jnp.zeros((4, 1), int)),
            ValueError,
            r"labels y must have shape \(N,\) = \(4,\).*got shape \(4, 1\)",
        ),
        (
            lambda o: o.svm_loss(jnp.ones((4, 3)), jnp.array([0, 1, 2, 3])),
            ValueError,
            r"labels y must lie in \[0, 3\).*got range \[0, 3\]",
        ),
        (
            lambda o: o.squared_error(jnp.ones((4, 1)), jnp.ones((4,))),
            ValueError,
            r"target must have the shape of pred \(4, 1\)",
        ),
    ],
)
def test_bad_input_raises_clear_error(ops, call, error, match):
    with pytest.raises(error, match=match):
        call(ops)


def test_shape_errors_raise_at_trace_time_under_jit():
    f = jax.jit(lambda x, w, b: layers.affine(x, w, b))
    with pytest.raises(ValueError, match="D = prod"):
        f(jnp.ones((2, 3)), jnp.ones((4, 5)), jnp.zeros(5))
