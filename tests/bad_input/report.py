"""Print the bad-input table: per function, tried / rejected cleanly / documented NaN / other."""

import collections

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


if __name__ == "__main__":
    main()
