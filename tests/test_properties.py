"""Property-based checks of the gradient triangle (manual = autodiff = numeric) over random shapes.

hypothesis draws the shapes and a seed for the values; each property runs a few examples in
float64 through ``gradcheck.check_vjp`` (small ``max_examples`` keeps the default suite fast).
"""

import numpy as np
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from jaxnets import layers, losses, manual_grads
from jaxnets.gradcheck import assert_vjp_close

# No shrinking: a failure reports its drawn example as is (shrinking re-runs float64 checks for minutes).
FEW = settings(max_examples=4, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate])
dim = st.integers(1, 4)
seed = st.integers(0, 2**16)


def _away_from_zero(rng, shape):
    v = rng.standard_normal(shape)
    return np.where(v >= 0, v + 0.05, v - 0.05)


@FEW
@given(n=dim, feature_dims=st.lists(dim, min_size=1, max_size=3), m=dim, seed=seed)
def test_affine_over_random_shapes(n, feature_dims, m, seed):
    rng = np.random.default_rng(seed)
    d = int(np.prod(feature_dims))
    args = (rng.standard_normal((n, *feature_dims)), rng.standard_normal((d, m)), rng.standard_normal(m))
    assert_vjp_close(layers.affine, manual_grads.affine, args, (0, 1, 2), seed)


@FEW
@given(shape=st.lists(dim, min_size=1, max_size=4), seed=seed)
def test_relu_over_random_shapes(shape, seed):
    x = _away_from_zero(np.random.default_rng(seed), shape)  # no kink within a finite-difference step
    assert_vjp_close(layers.relu, manual_grads.relu, (x,), (0,), seed)


@FEW
@given(n=dim, c=dim, f=dim, k=st.integers(1, 3), pad=st.integers(0, 1), extra=st.integers(0, 2), seed=seed)
def test_conv2d_over_random_shapes(n, c, f, k, pad, extra, seed):
    rng = np.random.default_rng(seed)
    h = k - 2 * pad + 1 + extra
    h = max(h, 1)
    args = (rng.standard_normal((n, c, h, h + 1)), rng.standard_normal((f, c, k, k)), rng.standard_normal(f), 1, pad)
    assert_vjp_close(layers.conv2d, manual_grads.conv2d, args, (0, 1, 2), seed)


@FEW
@given(n=dim, c=st.integers(2, 5), seed=seed)
def test_softmax_loss_over_random_shapes(n, c, seed):
    rng = np.random.default_rng(seed)
    args = (rng.standard_normal((n, c)), rng.integers(0, c, n))
    assert_vjp_close(losses.softmax_loss, manual_grads.softmax_loss, args, (0,), seed)
