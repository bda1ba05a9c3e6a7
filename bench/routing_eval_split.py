"""Split a folder of graded CSVs into training and test CSVs, for bench/routing_eval.py.

- `--by random`: every distinct prompt (contaminated ones dropped) shuffled
  with a fixed seed and cut in two disjoint halves (or `--test-share`);
- `--by subject`: whole files (MMLU's subjects) shuffled with the seed, the
  first ones for training and the rest for testing, so no subject is in both.

Writes train.csv and test.csv (same columns) into --out; nothing is committed.

Run:  .venv/bin/python bench/routing_eval_split.py ../shared/routing-eval/mmlu --by random --out var/mmlu-random
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from routing.learned.graded import contaminated_beside  # noqa: E402

SEED = 17
Key = TypeVar("Key")


def split_keys(keys: Sequence[Key], *, seed: int, test_share: float) -> tuple[list[Key], list[Key]]:
    """`keys` (distinct prompts, or subjects) shuffled with `seed` and cut in two: (training, test)."""
    shuffled = list(keys)
    random.Random(seed).shuffle(shuffled)
    cut = round(len(shuffled) * (1 - test_share))
    return shuffled[:cut], shuffled[cut:]


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    dropped = contaminated_beside(path)
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = [row for row in reader if row["prompt"] not in dropped]
        return list(reader.fieldnames or []), rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--by", choices=("random", "subject"), default="random")
    parser.add_argument("--test-share", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    files = sorted(args.folder.glob("*.csv"))
    if not files:
        parser.error(f"no CSV files in {args.folder}")
    columns: list[str] = []
    train: list[dict[str, str]] = []
    test: list[dict[str, str]] = []
    if args.by == "random":
        # A prompt asked twice (MMLU has a few) goes to one side with all its rows: the halves stay disjoint.
        by_prompt: dict[str, list[dict[str, str]]] = {}
        for path in files:
            columns, rows = _rows(path)
            for row in rows:
                by_prompt.setdefault(row["prompt"], []).append(row)
        train_prompts, test_prompts = split_keys(list(by_prompt), seed=args.seed, test_share=args.test_share)
        train = [row for prompt in train_prompts for row in by_prompt[prompt]]
        test = [row for prompt in test_prompts for row in by_prompt[prompt]]
    else:
        train_files, test_files = split_keys(files, seed=args.seed, test_share=args.test_share)
        for path in [*train_files, *test_files]:
            columns, rows = _rows(path)
            (train if path in train_files else test).extend(rows)
        print("test subjects:", ", ".join(p.stem for p in test_files))
    args.out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train.csv", train), ("test.csv", test)):
        with (args.out / name).open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
    print(f"{args.out}: train {len(train)} prompts, test {len(test)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
