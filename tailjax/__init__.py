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
* :mod:`tailjax.training` -- ``fit``: progress bar and checkpoint/resume for any kernel
"""

import importlib

from tailjax import risk
from tailjax.risk import cvar, var

__version__ = "0.1.0"

_SUBPACKAGES = ("parallel", "importance", "stochopt", "flows", "layers", "dfl", "dro", "nn", "training")

__all__ = ["risk", "cvar", "var", "__version__", *_SUBPACKAGES]


def __getattr__(name):
    if name in _SUBPACKAGES:
        module = importlib.import_module(f"tailjax.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'tailjax' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
