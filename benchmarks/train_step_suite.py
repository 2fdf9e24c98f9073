"""Run benchmarks/train_step.py for several implementations back to back and tabulate ratios.

Each row is its own process (so peak memory is its own); all rows are run once per round,
in the same order, and the table reports medians over rounds with ratios to the reference
of the same run. This is the command behind the table in docs/benchmarks.md:

  python benchmarks/train_step_suite.py --rounds 2 --repeat 3

On a GPU machine, the issue's setting:

  python benchmarks/train_step_suite.py --device cuda --backbone resnet101 --img-size 448 \\
      --batch 32 --rows backbone reference ours-amp
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HARNESS = Path(__file__).resolve().parent / "train_step.py"
sys.path.insert(0, str(HARNESS.parent))

from train_step import PROBLEM_ARGUMENTS, add_problem_arguments  # noqa: E402

# name -> extra harness arguments
ROWS = {
    "backbone": ["--impl", "backbone"],
    "reference": ["--impl", "reference"],
    "ours": ["--impl", "ours"],
    "ours+recompute2": ["--impl", "ours", "--recompute-stages", "2"],
    "ours+recompute3": ["--impl", "ours", "--recompute-stages", "3"],
    "ours-amp": ["--impl", "ours-amp"],
    "ours-amp+recompute2": ["--impl", "ours-amp", "--recompute-stages", "2"],
    "ours, step after backward, NCHW": ["--impl", "ours", "--step-after-backward",
                                        "--no-channels-last"],
}


def run_row(args: argparse.Namespace, extra: list[str]) -> dict:
    problem = [item for name in PROBLEM_ARGUMENTS
               for item in ("--" + name.replace("_", "-"), str(getattr(args, name)))]
    cmd = [sys.executable, str(HARNESS), *problem, "--repeat", str(args.repeat), "--json", *extra]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS),
                        metavar="ROW", help=f"rows to run, from: {', '.join(ROWS)}")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    add_problem_arguments(parser)
    parser.add_argument("--json-out", type=Path, help="also write every measurement here")
    args = parser.parse_args()
    if "reference" not in args.rows:
        parser.error("--rows must include reference: the ratios are taken against it")
    memory_key = "peak_mem_mb" if args.device == "cuda" else "peak_rss_mb"
    results: dict[str, list[dict]] = {row: [] for row in args.rows}
    for round_index in range(args.rounds):
        for row in args.rows:
            result = run_row(args, ROWS[row])
            results[row].append(result)
            print(f"round {round_index + 1}/{args.rounds} {row}: {result['step_s_median']:.3f} s, "
                  f"{result[memory_key]:.0f} MB", file=sys.stderr, flush=True)
    time = {row: statistics.median(r["step_s_median"] for r in rs) for row, rs in results.items()}
    memory = {row: statistics.median(r[memory_key] for r in rs) for row, rs in results.items()}
    floor = time.get("backbone")
    print("| row | s/step | x reference | head share over backbone | peak MB | x reference |\n"
          "|---|---|---|---|---|---|")
    for row in args.rows:
        share = ("" if floor is None or row == "backbone"
                 else f"{(time[row] - floor) / time[row]:.0%}")
        print(f"| {row} | {time[row]:.2f} | {time[row] / time['reference']:.2f} | {share} | "
              f"{memory[row]:.0f} | {memory[row] / memory['reference']:.2f} |")
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
