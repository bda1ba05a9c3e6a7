"""How well routing strategies choose between a weak and a strong model, on graded prompts nobody here wrote.

For every test prompt, each strategy gives a score (higher: more the strong
tier's) without calling any model; sweeping the threshold over the scores
gives RouteLLM's figures (routing/learned/evaluation.py): APGR, CPT(50%),
CPT(80%). At the threshold calibrated on the training prompts for
--target-share (the learned strategy's own; the others' scores' quantile on
the training prompts, labels unread), it prints the strong share, the
quality, and the cost saved against sending everything to the strong tier,
at --weak-price and --strong-price (USD per million input tokens; a prompt's
tokens are estimated as its characters / 4). Decision time is per prompt,
p50 and p99, and p50 on 12 KB prompts (test prompts repeated to that length).

Strategies: `random` (a seeded draw; APGR 0.5 by construction), `complexity`
(the local scorer, routing/strategies/complexity.py: complexity_score) and
`learned` (routing/learned/router.py, trained on --train). The first two
ignore --train's grades. Prompts listed in a contaminated_prompts.jsonl
beside a CSV are dropped.

Run:
  .venv/bin/python bench/routing_eval.py --train A.csv [--train B.csv …] --test C.csv \
      --weak COLUMN --strong COLUMN --strategy random --strategy learned [--json]
  Splits of a folder of graded CSVs: bench/routing_eval_split.py;
  means over several splits: bench/routing_eval_seeds.py.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from routing.learned.evaluation import at_threshold, sweep, threshold_for_share  # noqa: E402
from routing.learned.graded import Graded, GradedDataError, graded_files  # noqa: E402
from routing.learned.router import TrainingError, router_train  # noqa: E402
from routing.strategies.complexity import complexity_score  # noqa: E402

STRATEGIES = ("random", "complexity", "learned")
SEED = 17
# Decision time is also measured on prompts this long (the first LONG_PROMPTS test prompts, repeated to it).
LONG_CHARS = 12_000
LONG_PROMPTS = 500
# RouteLLM's prices (USD per million tokens, an even mix of input and output): GPT-4 and Mixtral 8x7B.
STRONG_PRICE = "24.7"
WEAK_PRICE = "0.24"


def _scorer(name: str, train: Sequence[Graded], target_share: float) -> tuple[Callable[[str], float], float | None]:
    """The strategy's score function, and its own calibrated threshold (None: calibrate on the training scores)."""
    if name == "random":
        draw = random.Random(SEED)
        return (lambda _prompt: draw.random()), None
    if name == "complexity":
        return complexity_score, None
    router = router_train(train, target_share=target_share)
    return router.score, router.threshold


def unseen(train: Sequence[Graded], test: Sequence[Graded]) -> list[Graded]:
    """The test prompts not in the training ones: MMLU's files share a few, and a strategy is tested on unseen ones."""
    seen = {r.prompt for r in train}
    if overlap := [r for r in test if r.prompt in seen]:
        print(f"left out of the test: {len(overlap)} prompts that are also in the training data", file=sys.stderr)
    return [r for r in test if r.prompt not in seen]


def _cost(rows: Sequence[Graded], strong: Sequence[bool], weak_price: Decimal, strong_price: Decimal) -> Decimal:
    tokens = [Decimal(len(r.prompt)) / 4 for r in rows]
    return sum(
        (t * (strong_price if up else weak_price) for t, up in zip(tokens, strong, strict=True)), Decimal(0)
    ) / Decimal(1_000_000)


def evaluate(
    name: str,
    train: Sequence[Graded],
    test: Sequence[Graded],
    *,
    target_share: float,
    weak_price: Decimal,
    strong_price: Decimal,
) -> dict[str, Any]:
    started = time.perf_counter()
    score, threshold = _scorer(name, train, target_share)
    trained_s = time.perf_counter() - started
    if threshold is None:
        threshold = threshold_for_share([score(r.prompt) for r in train] or [0.0], target_share)
    scores, times = [], []
    for row in test:
        began = time.perf_counter_ns()
        scores.append(score(row.prompt))
        times.append(time.perf_counter_ns() - began)
    long_times = []
    for row in test[:LONG_PROMPTS]:
        long_prompt = (row.prompt + "\n") * (LONG_CHARS // (len(row.prompt) + 1) + 1)
        began = time.perf_counter_ns()
        score(long_prompt[:LONG_CHARS])
        long_times.append(time.perf_counter_ns() - began)
    curve = sweep(test, scores)
    at = at_threshold(test, scores, threshold, curve)
    routed = _cost(test, [s >= threshold for s in scores], weak_price, strong_price)
    all_strong = _cost(test, [True] * len(test), weak_price, strong_price)
    quantiles = statistics.quantiles(times, n=100) if len(times) > 1 else times * 99
    return {
        "apgr": round(curve.apgr, 4),
        "cpt50": _share(curve.cpt(0.5)),
        "cpt80": _share(curve.cpt(0.8)),
        "target_share": target_share,
        "strong_share": round(at.strong_share, 4),
        "quality": round(at.quality, 4),
        "pgr": round(at.pgr, 4),
        "weak_quality": round(curve.weak_quality, 4),
        "strong_quality": round(curve.strong_quality, 4),
        "cost_usd": str(routed.quantize(Decimal("0.0001"))),
        "all_strong_cost_usd": str(all_strong.quantize(Decimal("0.0001"))),
        "cost_saved": round(float(1 - routed / all_strong), 4) if all_strong else 0.0,
        "decision_ms_p50": round(statistics.median(times) / 1e6, 4),
        "decision_ms_p99": round(quantiles[98] / 1e6, 4),
        "decision_ms_p50_12kb": round(statistics.median(long_times) / 1e6, 4),
        "train_s": round(trained_s, 2),
        "train_prompts": len(train),
        "test_prompts": len(test),
    }


def _share(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", action="append", default=[], type=Path, help="a graded CSV to train on")
    parser.add_argument("--test", action="append", required=True, type=Path, help="a graded CSV to test on")
    parser.add_argument("--weak", required=True, help="the weak model's column")
    parser.add_argument("--strong", required=True, help="the strong model's column")
    parser.add_argument("--strategy", action="append", choices=STRATEGIES, help="repeatable; default: all")
    parser.add_argument("--target-share", type=float, default=0.3, help="calibrated strong share (default 0.3)")
    parser.add_argument("--weak-price", type=Decimal, default=Decimal(WEAK_PRICE))
    parser.add_argument("--strong-price", type=Decimal, default=Decimal(STRONG_PRICE))
    parser.add_argument("--json", action="store_true", help="one JSON object keyed by strategy")
    args = parser.parse_args(argv)
    try:
        train = graded_files(args.train, weak=args.weak, strong=args.strong)
        test = graded_files(args.test, weak=args.weak, strong=args.strong)
    except (GradedDataError, OSError) as exc:
        parser.error(str(exc))
    if not test:
        parser.error("no test prompts left (after dropping the contaminated ones)")
    test = unseen(train, test)
    results = {}
    for name in args.strategy or STRATEGIES:
        try:
            results[name] = evaluate(
                name,
                train,
                test,
                target_share=args.target_share,
                weak_price=args.weak_price,
                strong_price=args.strong_price,
            )
        except TrainingError as exc:
            parser.error(f"{name}: {exc}")
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"train {len(train)} prompts, test {len(test)}; calibrated for {args.target_share:.0%} strong calls")
    header = (
        f"{'strategy':<11}{'APGR':>7}{'CPT50':>8}{'CPT80':>8}{'strong':>8}{'quality':>9}"
        f"{'saved':>8}{'p50 ms':>9}{'p99 ms':>9}{'12KB p50':>10}"
    )
    print(header)
    for name, r in results.items():
        print(
            f"{name:<11}{r['apgr']:>7.3f}{percent_or_dash(r['cpt50']):>8}{percent_or_dash(r['cpt80']):>8}{r['strong_share']:>8.1%}"
            f"{r['quality']:>9.1%}{r['cost_saved']:>8.1%}{r['decision_ms_p50']:>9.3f}{r['decision_ms_p99']:>9.3f}"
            f"{r['decision_ms_p50_12kb']:>10.3f}"
        )
    return 0


def percent_or_dash(value: float | None) -> str:
    """A CPT figure as a percentage; a dash where the strategy never reached that quality."""
    return "–" if value is None else f"{value:.1%}"


if __name__ == "__main__":
    raise SystemExit(main())
