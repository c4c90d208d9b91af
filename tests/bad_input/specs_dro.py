"""Bad-input specs (see spec.py) for the public API of the dro area."""

from __future__ import annotations

SPECS: list = []
