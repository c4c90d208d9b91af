"""Bad-input specs (see spec.py) for the public API of the dfl area."""

from __future__ import annotations

SPECS: list = []
