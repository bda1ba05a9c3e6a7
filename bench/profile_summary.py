"""Summarise a py-spy raw (collapsed stacks) profile: where the samples go, by function.

Run: .venv/bin/python bench/profile_summary.py PROFILE.txt [--top 30] [--match routing]
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("profile")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--match", default="", help="only frames whose text contains this")
    args = parser.parse_args()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in Path(args.profile).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        samples = int(count)
        frames = stack.split(";")
        if frames and frames[-1].startswith("process "):
            continue
        total += samples
        for frame in set(frames):
            if args.match in frame:
                inclusive[frame] += samples
        own[frames[-1]] += samples
    print(f"{total} samples\n\ninclusive:")
    for frame, samples in inclusive.most_common(args.top):
        print(f"{100 * samples / total:6.1f}%  {frame}")
    print("\nself:")
    for frame, samples in own.most_common(args.top):
        print(f"{100 * samples / total:6.1f}%  {frame}")


if __name__ == "__main__":
    main()
