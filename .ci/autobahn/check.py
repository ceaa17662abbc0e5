#!/usr/bin/env python3
"""Summarises an Autobahn fuzzingclient report; exits 1 if any case in 1.*-LAST.* fails
(LAST: the fourth argument, 10 by default; 13 with permessage-deflate).

A case passes when `behavior` is OK, NON-STRICT or INFORMATIONAL and `behaviorClose` is OK or
INFORMATIONAL.
"""

import collections
import json
import os
import sys

PASS = {"OK", "NON-STRICT", "INFORMATIONAL"}
PASS_CLOSE = {"OK", "INFORMATIONAL"}


def case_key(case_id):
    return tuple(int(part) for part in case_id.split("."))


def main():
    index_path, agent, seconds = sys.argv[1], sys.argv[2], sys.argv[3]
    last = int(sys.argv[4]) if len(sys.argv) > 4 else 10
    with open(index_path) as f:
        results = json.load(f)[agent]
    counts = collections.Counter(r["behavior"] for r in results.values())
    failures = []
    for case_id in sorted(results, key=case_key):
        result = results[case_id]
        if not 1 <= case_key(case_id)[0] <= last:
            continue
        if result["behavior"] not in PASS or result["behaviorClose"] not in PASS_CLOSE:
            description = ""
            report = os.path.join(os.path.dirname(index_path), result.get("reportfile", ""))
            try:
                with open(report) as f:
                    description = json.load(f).get("description", "")
            except (OSError, ValueError):
                pass
            failures.append(f"  {case_id}: {result['behavior']} / close {result['behaviorClose']}"
                            f" {description[:100]}")
    summary = ", ".join(f"{n} {behavior}" for behavior, n in sorted(counts.items()))
    print(f"autobahn ({agent}): {len(results)} cases in {seconds} s: {summary}; "
          f"{len(failures)} failing in 1.*-{last}.*")
    for line in failures:
        print(line)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
