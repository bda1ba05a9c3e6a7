"""Graded prompts: a prompt and whether the weak and the strong tier answered it well.

The CSV shape is RouteLLM's (../shared/routing-eval/): a `prompt` column and
one True/False column per model. Prompts listed (as `eval_prompt`) in a
`contaminated_prompts.jsonl` beside a CSV are dropped, as RouteLLM's own
evaluation drops them.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

CONTAMINATED = "contaminated_prompts.jsonl"
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


class GradedDataError(ValueError):
    """A graded CSV cannot be read; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Graded:
    prompt: str
    weak_ok: bool
    strong_ok: bool
    # Where it came from (a file's subject, a vote, a cascade): for splits by group, never for routing.
    group: str = ""

    @property
    def needs_strong(self) -> bool:
        """Only the strong tier answered it well: the calls a router should send up."""
        return self.strong_ok and not self.weak_ok


def _flag(value: str, where: str) -> bool:
    word = value.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise GradedDataError(f"{where}: {value!r} is not True or False.")


def graded_rows(text: str, *, weak: str, strong: str, group: str = "", source: str = "CSV") -> list[Graded]:
    """The graded prompts of one CSV's text; GradedDataError names the missing column or the bad cell."""
    reader = csv.DictReader(io.StringIO(text))
    columns = reader.fieldnames or []
    for needed in ("prompt", weak, strong):
        if needed not in columns:
            raise GradedDataError(f"{source}: no column {needed!r} (columns: {', '.join(columns) or 'none'}).")
    rows = []
    for line, row in enumerate(reader, start=2):
        where = f"{source}, line {line}"
        prompt = row["prompt"] or ""
        if not prompt.strip():
            raise GradedDataError(f"{where}: the prompt is empty.")
        rows.append(Graded(prompt, _flag(row[weak] or "", where), _flag(row[strong] or "", where), group))
    return rows


def contaminated_beside(path: Path) -> frozenset[str]:
    """The prompts a `contaminated_prompts.jsonl` in the CSV's folder lists; none when there is no such file."""
    listing = path.parent / CONTAMINATED
    if not listing.exists():
        return frozenset()
    prompts = set()
    with listing.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                prompts.add(json.loads(line)["eval_prompt"])
    return frozenset(prompts)


def graded_file(path: Path, *, weak: str, strong: str) -> list[Graded]:
    """One CSV file's graded prompts, without the contaminated ones; the group is the file's name."""
    dropped = contaminated_beside(path)
    rows = graded_rows(path.read_text(encoding="utf-8"), weak=weak, strong=strong, group=path.stem, source=str(path))
    return [row for row in rows if row.prompt not in dropped]


def graded_files(paths: Iterable[Path], *, weak: str, strong: str) -> list[Graded]:
    return [row for path in paths for row in graded_file(path, weak=weak, strong=strong)]
