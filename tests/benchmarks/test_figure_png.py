"""Figures: saved as palette PNGs of the same size, their colours kept."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks import _harness as harness  # noqa: E402


def test_save_figure_writes_a_palette_png_with_the_plot_colours(tmp_path):
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [0, 1], color="#d62728", lw=8)
    path = harness.save_figure(fig, tmp_path, "line")
    with Image.open(path) as image:
        assert image.mode == "P" and image.size == (360, 240)
        rgb = np.asarray(image.convert("RGB")).reshape(-1, 3).astype(int)
    red = np.array([0xD6, 0x27, 0x28])
    assert np.min(np.abs(rgb - red).sum(axis=1)) <= 6  # the line's colour survives the palette
    assert np.any(np.all(rgb == 255, axis=1))  # and the white background
