"""Summarise the per-seed values that quality tests record (``LU_QUALITY_LOG``): one line per statistic.

    python tests/quality_spread.py portability_output/quality.jsonl

For each statistic: the mean over seeds in every configuration (``capability/threads``), the
smallest and largest single-seed value over all configurations, and the seed-to-seed spread
(largest max − min over seeds within one configuration).
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict


def main(path: str) -> None:
    rows: dict[str, dict[str, list[float]]] = defaultdict(dict)
    with open(path) as fh:
        for line in fh:
            entry = json.loads(line)
            rows[entry["statistic"]][f"{entry['capability']}/{entry['threads']}"] = entry["values"]
    for statistic in sorted(rows):
        configs = rows[statistic]
        means = ", ".join(f"{c} {statistics.fmean(v):+.4f}" for c, v in sorted(configs.items()))
        values = [x for v in configs.values() for x in v]
        spread = max(max(v) - min(v) for v in configs.values())
        print(f"{statistic}\n    mean: {means}\n    single seeds {min(values):+.4f} .. {max(values):+.4f}, seed spread {spread:.4f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "portability_output/quality.jsonl")
