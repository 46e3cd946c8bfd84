#!/usr/bin/env python3
"""Own (exclusive) instructions per function from a callgrind output file.

callgrind_annotate's own-cost listing is wrong for a dump taken after
`callgrind_control --zero` (it charges nearly everything to the frame
that was running at the zero); the file itself is right: a function's own
cost is every cost line in its `fn=` block except the line after each
`calls=` line (that one is the call's inclusive cost).

    callgrind-self.py FILE[,FILE...] [DIVISOR] [TOP]

Several files (one per process of a forking server, e.g. Kamailio's) are
added together, functions matched by name.
"""
import re
import sys
from collections import defaultdict


def main():
    paths = sys.argv[1].split(",")
    div = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 30
    own = defaultdict(int)
    for path in paths:
        for name, cost in own_costs(path).items():
            own[name] += cost
    total = sum(own.values())
    print(f"total own instructions: {total:,.0f} ({total / div:,.0f} per unit)")
    for name, cost in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {cost / div:10,.0f}  {100.0 * cost / total:5.1f} %  {name[:140]}")


def own_costs(path):
    """{function name: own instructions} of one callgrind file."""
    names = {}
    own = defaultdict(int)
    fn = None
    after_calls = False
    # fn=(id) name, or fn=(id) alone once the id is known
    ref = re.compile(r"^(fn|cfn|cfi|cfl|fi|fe|fl|ob|cob)=\((\d+)\)(?: (.*))?$")
    for line in open(path, errors="replace"):
        line = line.rstrip("\n")
        m = ref.match(line)
        if m:
            kind, num, name = m.group(1), m.group(2), m.group(3)
            if kind in ("fn", "cfn"):
                if name is not None:
                    names[num] = name
                if kind == "fn":
                    fn = num
            continue
        if line.startswith("calls="):
            after_calls = True
            continue
        if line and (line[0].isdigit() or line[0] in "+-*"):
            parts = line.split()
            if after_calls:
                after_calls = False
                continue
            if fn is not None and len(parts) >= 2:
                own[fn] += int(parts[1])
    return {names.get(num, num): cost for num, cost in own.items()}


main()
