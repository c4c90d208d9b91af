"""The README's Python blocks run, in order, in one namespace (a tour that does not run fails)."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_readme_python_blocks_run():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 4
    namespace: dict = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"README.md block {i + 1}", "exec"), namespace)
    assert namespace["result"].history["loss"].shape == (50,)
    assert abs(float(namespace["out"].state.theta_avg.sum()) - 1.0) < 1e-5
    assert float(namespace["fitted"].history["loss"][-10:].mean()) < float(namespace["fitted"].history["loss"][:10].mean())
