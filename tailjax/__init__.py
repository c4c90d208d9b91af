"""tailjax: functional JAX tools for decisions and generative models that care about tails.

Subpackages load on first use (``tailjax.flows``, ``tailjax.dfl``, ...), so ``import tailjax``
stays light:

* :mod:`tailjax.risk` -- VaR/CVaR, the Rockafellar-Uryasev objective, TFFT thresholds
* :mod:`tailjax.parallel` -- exact statistics of samples sharded over devices
* :mod:`tailjax.importance`, :mod:`tailjax.stochopt` -- importance sampling for tail risk
* :mod:`tailjax.flows` -- flow matching, adjoint matching, TFFT, EXP-FT, FDC
* :mod:`tailjax.layers`, :mod:`tailjax.dfl` -- differentiable decisions, Gen-DFL, DFL baselines
* :mod:`tailjax.dro` -- GAS-DRO and classic DRO baselines
* :mod:`tailjax.nn` -- the Flax modules
* :mod:`tailjax.base` -- the ``Kernel(init, step)`` shape every trainer shares
* :mod:`tailjax.training` -- ``gradient_kernel``, ``minibatches`` and ``fit`` (progress bar,
  validation selection, checkpoint/resume) for any kernel
* :mod:`tailjax.checkpoint` -- msgpack checkpoints whose header knows their run
"""

import importlib

from tailjax import risk
from tailjax._version import __version__
from tailjax.risk import cvar, var

_SUBPACKAGES = (
    "parallel", "importance", "stochopt", "flows", "layers", "dfl", "dro", "nn", "training",
    "checkpoint", "base",
)

__all__ = ["risk", "cvar", "var", "__version__", *_SUBPACKAGES]


def __getattr__(name):
    if name in _SUBPACKAGES:
        module = importlib.import_module(f"tailjax.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'tailjax' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
