"""Two runs of ``benchmarks/serve_request.py`` side by side: per method, the runs that reached their target, the wall
time and the checks' share of it, and every run's line (reached, steps, what stopped it, checks' share, wall, gap).

    python benchmarks/compare_serve.py before.json after.json [--runs]

Both files must hold the same requests (model, scenario, request, method); runs in one file only are listed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def load(path: str) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    return {(r["model"], r["scenario"], r["request"], r["method"]): r for r in json.loads(Path(path).read_text())["runs"]}


def line(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"error: {r['error']}"
    share = r["check_time_s"] / r["wall_s"] if r.get("wall_s") else float("nan")
    return (f"{'reached' if r['reached'] else 'not    '} {r['steps']:>4} steps {r['stopped_by']:<8} checks {share:4.0%}"
            f" wall {r['wall_s']:6.1f} s gap {100 * r['gap']:5.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--runs", action="store_true", help="print every run's line too")
    args = parser.parse_args()
    before, after = load(args.before), load(args.after)
    for key in sorted(set(before) ^ set(after)):
        print("in one file only:", key)
    totals: dict[tuple[str, str, str], list[float]] = {}
    for key in sorted(set(before) & set(after)):
        model, scenario, request, method = key
        a, b = before[key], after[key]
        if method == "Original" or "error" in a or "error" in b:
            continue
        if args.runs:
            print(f"{model} {scenario} {request} {method}: {line(a)} | {line(b)}")
        t = totals.setdefault((model, scenario, method), [0, 0, 0.0, 0.0, 0.0, 0.0, 0, 0, 0])
        t[0] += bool(a["reached"])
        t[1] += bool(b["reached"])
        t[2] += a["wall_s"]
        t[3] += b["wall_s"]
        t[4] += a["check_time_s"]
        t[5] += b["check_time_s"]
        t[6] += 1
        t[7] += a["gap"] < before[(model, scenario, request, "Original")]["gap"] if scenario != "class" else 0
        t[8] += b["gap"] < after[(model, scenario, request, "Original")]["gap"] if scenario != "class" else 0
    print("| model | scenario | method | reached before → after | gap < Original's before → after | wall (s) before → after"
          " | checks' share before → after |")
    print("|---|---|---|---|---|---|---|")
    for (model, scenario, method), t in sorted(totals.items()):
        n = int(t[6])
        better = "–" if scenario == "class" else f"{int(t[7])}/{n} → {int(t[8])}/{n}"
        print(f"| {model} | {scenario} | {method} | {int(t[0])}/{n} → {int(t[1])}/{n} | {better} | {t[2]:.0f} → {t[3]:.0f}"
              f" | {t[4] / t[2]:.0%} → {t[5] / t[3]:.0%} |")


if __name__ == "__main__":
    main()
