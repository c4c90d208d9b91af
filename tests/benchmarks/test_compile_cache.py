"""The reproductions' ``--compile-cache``: off by default at the small sizes, a folder that
JAX's persistent compilation cache fills when asked for, and the same result on a hit."""

import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from benchmarks import _harness as harness

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _parse(argv, compile_cache=True):
    return harness.parser(None, out="x", compile_cache=compile_cache).parse_args(argv)


def test_auto_is_off_at_the_small_size_and_none_turns_it_off():
    assert _parse([]).compile_cache == "auto"
    assert harness.use_compile_cache(_parse(["--size", "small"])) is None
    assert harness.use_compile_cache(_parse(["--size", "paper", "--compile-cache", "none"])) is None
    assert "compile_cache" not in vars(_parse([], compile_cache=False))


_CHILD = textwrap.dedent("""
    import sys, jax, jax.numpy as jnp
    from benchmarks import _harness as harness
    hits = []
    jax.monitoring.register_event_listener(
        lambda name, **kw: hits.append(name) if name == "/jax/compilation_cache/cache_hits" else None)
    harness.COMPILE_CACHE = harness.pathlib.Path(sys.argv[1])
    folder = harness.use_compile_cache(harness.parser(None, out="x", compile_cache=True).parse_args(["--size", "paper"]))
    assert str(folder) == sys.argv[1], folder
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # store this small program too
    f = jax.jit(lambda x: jnp.cumsum(jnp.sin(x) ** 2) @ x)
    print(repr(float(f(jnp.linspace(0.0, 3.0, 257)))), len(hits))
""")


def test_paper_size_fills_the_cache_and_a_second_process_hits_it_with_the_same_result(tmp_path):
    folder = tmp_path / "cache"
    outs = []
    for _ in range(2):
        run = subprocess.run([sys.executable, "-c", _CHILD, str(folder)], capture_output=True, text=True,
                             cwd=ROOT, env={"JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)})
        assert run.returncode == 0, run.stderr[-2000:]
        value, hits = run.stdout.split()
        outs.append((float(value), int(hits)))
    assert any(folder.iterdir())
    (first, hits_first), (second, hits_second) = outs
    assert hits_first == 0 and hits_second >= 1
    assert first == second
    x = np.linspace(0.0, 3.0, 257)
    assert first == pytest.approx(float(np.cumsum(np.sin(x) ** 2) @ x), rel=1e-5)
