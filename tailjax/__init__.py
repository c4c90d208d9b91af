"""tailjax: functional JAX tools for decisions and generative models that care about tails."""

from tailjax import risk
from tailjax.risk import cvar, var

__version__ = "0.1.0"

__all__ = ["risk", "cvar", "var", "__version__"]
