"""The machinery of the bad-input suite: argument kinds, their bad values, and the verdicts.

A :class:`Spec` names a public function, builds a valid call from named arguments, and says
the kind of each argument it probes. Every kind knows its bad values. A call with one bad
argument is judged:

* ``rejected``: ``ValueError`` (or ``TypeError`` for a wrong type) whose message names the
  argument, at call or trace time;
* ``nan``: the documented result for what cannot be checked (every float output is NaN);
* anything else fails: a finite result (a silent wrong number), a NaN mixed with finite
  numbers, or another exception (jax-internal, or one naming another argument).

Scalars are probed twice: concrete, and traced under ``jax.jit`` (where only a NaN result
or a trace-time error is acceptable); arrays with NaN entries likewise.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

NAN = float("nan")
INF = float("inf")


@dataclasses.dataclass(frozen=True)
class Kind:
    """An argument kind: its bad values (label -> value or value factory) and whether
    each may also be passed traced."""

    bad: dict[str, Any]
    traced: bool = True


def level(closed_right: bool = False, closed_left: bool = False) -> Kind:
    """A probability in (0, 1) (``closed_right``: (0, 1])."""
    bad = {"zero": 0.0, "negative": -0.25, "above one": 1.5, "nan": NAN, "inf": INF}
    if closed_left:
        bad.pop("zero")
    if not closed_right:
        bad["one"] = 1.0
    return Kind(bad)


def positive(allow_zero: bool = False) -> Kind:
    bad = {"negative": -1.0, "nan": NAN, "-inf": -INF}
    if not allow_zero:
        bad["zero"] = 0.0
    return Kind(bad)


def choice(*valid: str) -> Kind:
    return Kind({"unknown": "sideways", "other case": valid[0].upper()}, traced=False)


def count(minimum: int = 1) -> Kind:
    return Kind({"below minimum": minimum - 1, "negative": -3}, traced=False)


def samples(batched: bool = True, nan_ok: bool = False) -> Kind:
    """An array of samples: empty, no axis, NaN entries (traced too), and for functions of
    one 1-D sample (``batched=False``) an extra axis."""
    bad = {
        "empty": lambda a: jnp.zeros(a.shape[:-1] + (0,), a.dtype),
        "scalar": lambda a: jnp.asarray(1.0, a.dtype),
        "nan entry": lambda a: a.reshape(-1).at[1].set(jnp.nan).reshape(a.shape),
    }
    if nan_ok:
        bad.pop("nan entry")
    if not batched:
        bad["extra axis"] = lambda a: jnp.stack([a, a, a])[None]
    return Kind(bad, traced=True)


def weights() -> Kind:
    return Kind({
        "negative": lambda a: a.at[0].set(-1.0),
        "nan": lambda a: a.at[0].set(jnp.nan),
        "inf": lambda a: a.at[0].set(jnp.inf),
        "all zero": lambda a: jnp.zeros_like(a),
        "wrong length": lambda a: jnp.ones(a.shape[0] + 3, a.dtype),
    })


@dataclasses.dataclass(frozen=True)
class Spec:
    name: str  # dotted public name, for the report
    call: Callable[..., Any]  # call(**args)
    args: dict[str, Any]  # valid arguments
    kinds: dict[str, Kind]  # the probed ones
    jittable: bool = True  # False for builders and host-side functions: concrete calls only
    slow_traced: bool = False  # traced cases compile a solver or trainer each: slow suite only


@dataclasses.dataclass(frozen=True)
class Case:
    spec: Spec
    arg: str
    label: str
    traced: bool

    @property
    def id(self) -> str:
        return f"{self.spec.name}:{self.arg}={self.label}{':jit' if self.traced else ''}"

    @property
    def slow(self) -> bool:
        return self.traced and self.spec.slow_traced


def cases(specs: list[Spec]) -> list[Case]:
    out = []
    for spec in specs:
        for arg, kind in spec.kinds.items():
            for label in kind.bad:
                out.append(Case(spec, arg, label, False))
                if kind.traced and spec.jittable:
                    out.append(Case(spec, arg, label, True))
    return out


def _bad_value(case: Case) -> Any:
    bad = case.spec.kinds[case.arg].bad[case.label]
    return bad(case.spec.args[case.arg]) if callable(bad) else bad


def _float_leaves(out: Any) -> list[np.ndarray]:
    leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(out)]
    return [x for x in leaves if np.issubdtype(x.dtype, np.floating) and x.size]


def judge(case: Case) -> tuple[str, str]:
    """(verdict, detail): verdict in rejected | nan | silent | other."""
    args = dict(case.spec.args)
    value = _bad_value(case)
    try:
        if case.traced:
            args.pop(case.arg)
            fn = jax.jit(lambda v: case.spec.call(**{**args, case.arg: v}))
            out = fn(value)
        else:
            args[case.arg] = value
            out = case.spec.call(**args)
        out = jax.block_until_ready(out)
    except (ValueError, TypeError) as err:
        message = str(err)
        if case.arg in message:
            return "rejected", message.splitlines()[0][:120]
        return "other", f"{type(err).__name__} not naming {case.arg!r}: {message[:200]}"
    except Exception as err:  # noqa: BLE001 - every other exception is a defect
        return "other", f"{type(err).__module__}.{type(err).__name__}: {str(err)[:200]}"
    floats = _float_leaves(out)
    if floats and all(np.all(np.isnan(x)) for x in floats):
        return "nan", ""
    return "silent", f"returned {[x.tolist() if x.size < 6 else x.shape for x in floats]}"
