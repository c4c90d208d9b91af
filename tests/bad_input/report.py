"""Print the bad-input table: per function, tried / rejected cleanly / documented NaN / other,
and how many of each module's public functions the suite probes."""

import collections
import importlib
import inspect

from tests.bad_input.spec import cases, judge
from tests.bad_input.specs import SPECS


def main():
    table = collections.defaultdict(collections.Counter)
    failures = []
    for case in cases(SPECS):
        verdict, detail = judge(case)
        table[case.spec.name][verdict] += 1
        if verdict not in ("rejected", "nan"):
            failures.append(f"{case.id}: {verdict}: {detail}")
    total = collections.Counter()
    print("| function | tried | rejected cleanly | documented NaN | silent value | other |")
    print("|---|---|---|---|---|---|")
    for name, c in table.items():
        total.update(c)
        print(f"| {name} | {sum(c.values())} | {c['rejected']} | {c['nan']} | {c['silent']} | {c['other']} |")
    print(f"| all | {sum(total.values())} | {total['rejected']} | {total['nan']} | {total['silent']} | {total['other']} |")
    for line in failures:
        print(line)
    print_coverage({spec.name for spec in SPECS})


MODULES = ("risk", "parallel", "importance", "stochopt", "flows", "dro", "training", "layers", "dfl", "nn",
           "checkpoint")


def print_coverage(probed):
    """Per module: public functions (``__all__``), how many are probed, and which are not."""
    print("\n| module | public functions | probed | not probed |")
    print("|---|---|---|---|")
    totals = [0, 0]
    for name in MODULES:
        module = importlib.import_module(f"tailjax.{name}")
        functions = [f for f in module.__all__ if inspect.isfunction(getattr(module, f))]
        missing = [f for f in functions if f"{name}.{f}" not in probed]
        totals[0] += len(functions)
        totals[1] += len(functions) - len(missing)
        print(f"| {name} | {len(functions)} | {len(functions) - len(missing)} | {', '.join(missing)} |")
    print(f"| all | {totals[0]} | {totals[1]} | |")


if __name__ == "__main__":
    main()
