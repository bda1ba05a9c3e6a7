"""bench/routing_eval.py over several splits of a folder of graded CSVs: each strategy's mean and spread.

One split's APGR moves with the seed that drew it (on MMLU, 0.63 to 0.65 for
the same learned router), so a figure worth quoting is a mean over seeds,
with its spread. For each `--by` (random: disjoint halves of the distinct
prompts; subject: whole files on each side) and each `--seed`, the folder is
split as bench/routing_eval_split.py splits it (the same halves for the same
seed), each strategy is trained on one half and evaluated on the other
(bench/routing_eval.py's `evaluate`), and the table gives per strategy and
split: APGR mean, standard deviation, min and max over the seeds, CPT(50%)
and CPT(80%) means, and decision times (the median over seeds of each
seed's p50 and p99, and of the 12 KB p50). Nothing is tuned here: the
strategies' settings are fixed in their code.

Run:
  nice -n 10 .venv/bin/python bench/routing_eval_seeds.py ../shared/routing-eval/mmlu \\
      --weak mistralai/Mixtral-8x7B-Instruct-v0.1 --strong gpt-4-1106-preview \\
      --seed 1 --seed 2 --seed 3 --seed 4 --seed 5 [--by random --by subject] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.routing_eval import (  # noqa: E402
    STRATEGIES,
    STRONG_PRICE,
    WEAK_PRICE,
    evaluate,
    percent_or_dash,
    unseen,
)
from bench.routing_eval_split import split_keys  # noqa: E402
from routing.learned.graded import Graded, GradedDataError, graded_files  # noqa: E402


def split(rows: Sequence[Graded], files: Sequence[Path], *, by: str, seed: int) -> tuple[list[Graded], list[Graded]]:
    """bench/routing_eval_split.py's halves for `seed`, in the same order, as graded rows."""
    keys = list(dict.fromkeys(r.prompt for r in rows)) if by == "random" else [path.stem for path in files]
    train_keys, test_keys = split_keys(keys, seed=seed, test_share=0.5)
    grouped: dict[str, list[Graded]] = {}
    for row in rows:
        grouped.setdefault(row.prompt if by == "random" else row.group, []).append(row)
    train = [row for key in train_keys for row in grouped.get(key, [])]
    test = [row for key in test_keys for row in grouped.get(key, [])]
    return train, unseen(train, test)


def summary(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    apgr = [r["apgr"] for r in runs]

    def mean(key: str) -> float | None:
        values = [r[key] for r in runs if r[key] is not None]
        return round(statistics.fmean(values), 4) if values else None

    return {
        "seeds": len(runs),
        "apgr_mean": round(statistics.fmean(apgr), 4),
        "apgr_sd": round(statistics.stdev(apgr), 4) if len(apgr) > 1 else 0.0,
        "apgr_min": min(apgr),
        "apgr_max": max(apgr),
        "cpt50_mean": mean("cpt50"),
        "cpt80_mean": mean("cpt80"),
        "decision_ms_p50": round(statistics.median(r["decision_ms_p50"] for r in runs), 4),
        "decision_ms_p99": round(statistics.median(r["decision_ms_p99"] for r in runs), 4),
        "decision_ms_p50_12kb": round(statistics.median(r["decision_ms_p50_12kb"] for r in runs), 4),
        "train_s": round(statistics.median(r["train_s"] for r in runs), 2),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--weak", required=True, help="the weak model's column")
    parser.add_argument("--strong", required=True, help="the strong model's column")
    parser.add_argument("--seed", action="append", type=int, required=True, help="repeatable: one split per seed")
    parser.add_argument("--by", action="append", choices=("random", "subject"), help="repeatable; default: both")
    parser.add_argument("--strategy", action="append", choices=STRATEGIES, help="repeatable; default: all")
    parser.add_argument("--target-share", type=float, default=0.3)
    parser.add_argument("--json", action="store_true", help="every run and the summaries as one JSON object")
    args = parser.parse_args(argv)
    files = sorted(args.folder.glob("*.csv"))
    if not files:
        parser.error(f"no CSV files in {args.folder}")
    try:
        rows = graded_files(files, weak=args.weak, strong=args.strong)
    except (GradedDataError, OSError) as exc:
        parser.error(str(exc))
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for by in args.by or ("random", "subject"):
        for seed in args.seed:
            train, test = split(rows, files, by=by, seed=seed)
            for name in args.strategy or STRATEGIES:
                result = evaluate(
                    name,
                    train,
                    test,
                    target_share=args.target_share,
                    weak_price=Decimal(WEAK_PRICE),
                    strong_price=Decimal(STRONG_PRICE),
                )
                runs.setdefault(name, {}).setdefault(by, []).append({"seed": seed, **result})
                print(f"{by} seed {seed} {name}: APGR {result['apgr']:.4f}", file=sys.stderr, flush=True)
    summaries = {name: {by: summary(seeded) for by, seeded in splits.items()} for name, splits in runs.items()}
    if args.json:
        print(json.dumps({"summaries": summaries, "runs": runs}, indent=2))
        return 0
    print(f"seeds {', '.join(map(str, args.seed))}; calibrated for {args.target_share:.0%} strong calls")
    print(
        f"{'strategy':<11}{'split':<9}{'APGR':>7}{'sd':>7}{'min':>7}{'max':>7}{'CPT50':>8}{'CPT80':>8}"
        f"{'p50 ms':>9}{'p99 ms':>9}{'12KB p50':>10}"
    )
    for name, splits in summaries.items():
        for by, s in splits.items():
            print(
                f"{name:<11}{by:<9}{s['apgr_mean']:>7.3f}{s['apgr_sd']:>7.3f}{s['apgr_min']:>7.3f}{s['apgr_max']:>7.3f}"
                f"{percent_or_dash(s['cpt50_mean']):>8}{percent_or_dash(s['cpt80_mean']):>8}{s['decision_ms_p50']:>9.3f}"
                f"{s['decision_ms_p99']:>9.3f}{s['decision_ms_p50_12kb']:>10.3f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
