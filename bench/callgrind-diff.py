#!/usr/bin/env python3
"""Compare two callgrind dumps function by function, per request.

    bench/callgrind-diff.py A B REQUESTS [REGEX]

A and B are dumps kept by `KEEP=dir bench/instructions.sh` (e.g. the seed run and the POLICY=keys run),
REQUESTS the count each was divided by (2000 by default in instructions.sh). Prints the functions whose
inclusive cost per request changed most (B minus A), then, for each function matching REGEX, how its
callees changed. Inclusive costs are summed from the dump's call edges (`calls=` lines), which is what
`callgrind_annotate --inclusive=yes` does; recursion is not deduplicated, so read the leaf-side rows.
"""
import collections
import re
import sys


def parse(path):
    """Self cost per function and inclusive cost per (caller, callee) edge, names decompressed."""
    names = {}

    def name(v):
        m = re.match(r"\((\d+)\)(?: (.*))?$", v)
        if not m:
            return v
        if m.group(2) is not None:
            names[m.group(1)] = m.group(2)
        return names.get(m.group(1), v)

    self_cost, calls = collections.Counter(), collections.Counter()
    fn = cfn = None
    pending = False
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            if line[0].isdigit() or line[0] in "+-*":
                parts = line.split()
                cost = int(parts[1]) if len(parts) > 1 else 0
                if pending:
                    calls[(fn, cfn)] += cost
                    pending = False
                else:
                    self_cost[fn] += cost
                continue
            key, _, value = line.partition("=")
            if key == "fn":
                fn = name(value)
            elif key == "cfn":
                cfn = name(value)
            elif key == "calls":
                pending = True
    return self_cost, calls


def inclusive(self_cost, calls):
    total = collections.Counter(self_cost)
    for (caller, callee), cost in calls.items():
        if caller != callee:
            total[caller] += cost
    return total


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    a, b, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    sa, ca = parse(a)
    sb, cb = parse(b)
    ia, ib = inclusive(sa, ca), inclusive(sb, cb)
    print(f"total per request: A {sum(sa.values()) / n:.0f}, B {sum(sb.values()) / n:.0f}")
    print("inclusive, B - A (per request):")
    diff = sorted(set(ia) | set(ib), key=lambda f: -abs(ib[f] - ia[f]))
    for f in diff[:60]:
        print(f"  {(ib[f] - ia[f]) / n:+9.0f}  A {ia[f] / n:8.0f}  B {ib[f] / n:8.0f}  {(f or '')[:160]}")
    if len(sys.argv) > 4:
        pat = re.compile(sys.argv[4])
        for f in sorted({f for f in set(ia) | set(ib) if f and pat.search(f)}, key=lambda f: -ib[f])[:8]:
            print(f"== {f[:160]}: self A {sa[f] / n:.0f}, B {sb[f] / n:.0f}")
            ka = collections.Counter({g: v for (x, g), v in ca.items() if x == f})
            kb = collections.Counter({g: v for (x, g), v in cb.items() if x == f})
            for g in sorted(set(ka) | set(kb), key=lambda g: -abs(kb[g] - ka[g]))[:20]:
                if abs(kb[g] - ka[g]) / n < 100:
                    break
                print(f"  {(kb[g] - ka[g]) / n:+8.0f}  A {ka[g] / n:7.0f}  B {kb[g] / n:7.0f}  {g[:140]}")


if __name__ == "__main__":
    main()
