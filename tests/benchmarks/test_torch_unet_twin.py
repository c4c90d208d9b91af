"""The PyTorch peer of the UNet rows computes what tailjax computes (where torch is installed)."""

import jax
import jax.numpy as jnp
import pytest

torch = pytest.importorskip("torch")

from benchmarks.perf import _torch_unet as torch_unet  # noqa: E402
from tailjax.nn import UNet  # noqa: E402


def test_twin_unet_and_its_adjoint_matching_loss_match_jax():
    u = dict(channels=(8, 16, 16), image=(32, 32, 3), grid=20, batch=4)
    module = UNet(channels=u["channels"], time_dim=128, in_channels=3, time_scale=1000.0, num_classes=10)
    params = module.init(jax.random.key(0), jnp.zeros(u["image"]), jnp.zeros(()), jnp.zeros((), jnp.int32))
    assert torch_unet.loss_parity(torch, module, params, u, "cpu") < 1e-5
