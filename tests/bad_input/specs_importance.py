"""Bad-input specs (see spec.py) for the public API of the importance area."""

from __future__ import annotations

SPECS: list = []
