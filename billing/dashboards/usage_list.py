"""The usage list and its export: records newest first, read by key (created_at, id), never by OFFSET.

An OFFSET query reads and throws away every row before its page, so page
10,000 of a 5M-row ledger costs as much as reading it; a keyset page
starts at an index position (the records' (team, created_at) and (user,
created_at) indexes; README, "A team's calls") and reads only its own
rows, however deep. The export walks the
same keys batch after batch, so it holds one batch in memory at a time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db.models import BooleanField, ExpressionWrapper, Q

from billing.models import UNPRICED, UsageRecord

if TYPE_CHECKING:
    from django.db.models import QuerySet

PAGE_ROWS = 50
EXPORT_BATCH_ROWS = 2000
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class BadCursor(ValueError):
    """A page's cursor in the URL that no page wrote."""


@dataclass(frozen=True)
class Cursor:
    """A record's place in the list: its (created_at, id), newest first."""

    created_at: dt.datetime
    pk: int

    def __str__(self) -> str:
        # Whole microseconds since the epoch: exact both ways, unlike a float timestamp.
        return f"{(self.created_at - EPOCH) // dt.timedelta(microseconds=1)}-{self.pk}"

    @classmethod
    def parse(cls, text: str) -> Cursor:
        micros, _, pk = text.partition("-")
        if not (micros.isdigit() and pk.isdigit()) or len(micros) > 18 or len(pk) > 18:
            raise BadCursor(f"Not a page of this list: {text[:40]!r}.")
        try:
            created_at = EPOCH + dt.timedelta(microseconds=int(micros))
        except OverflowError as error:
            raise BadCursor(f"Not a page of this list: {text[:40]!r}.") from error
        return cls(created_at=created_at, pk=int(pk))

    @classmethod
    def of(cls, record: UsageRecord) -> Cursor:
        return cls(created_at=record.created_at, pk=record.pk)


def older_than(cursor: Cursor) -> Q:
    # The created_at bound on its own lets the index range start at the cursor; the OR settles ties.
    return Q(created_at__lte=cursor.created_at) & (Q(created_at__lt=cursor.created_at) | Q(pk__lt=cursor.pk))


def newer_than(cursor: Cursor) -> Q:
    return Q(created_at__gte=cursor.created_at) & (Q(created_at__gt=cursor.created_at) | Q(pk__gt=cursor.pk))


@dataclass(frozen=True)
class UsagePage:
    records: list[UsageRecord]
    # Where the next older and newer pages start; None at either end of the list.
    older: Cursor | None
    newer: Cursor | None


def with_unpriced(records: QuerySet[UsageRecord]) -> QuerySet[UsageRecord]:
    """The records with `unpriced`: answered by a model that had no price, so booked with no cost."""
    return records.annotate(unpriced=ExpressionWrapper(UNPRICED, output_field=BooleanField()))


def usage_page(
    records: QuerySet[UsageRecord], *, after: Cursor | None = None, before: Cursor | None = None, size: int = PAGE_ROWS
) -> UsagePage:
    """One page of `records`, newest first: the first, the one older than `after`, or the one newer than `before`."""
    rows = with_unpriced(records).select_related("user", "team", "api_key")
    if before is not None:
        # Read upwards from the cursor, then turn the page the right way up.
        found = list(rows.filter(newer_than(before)).order_by("created_at", "pk")[: size + 1])
        more_newer = len(found) > size
        page = found[:size][::-1]
        newer = Cursor.of(page[0]) if page and more_newer else None
        older = Cursor.of(page[-1]) if page else None
        return UsagePage(records=page, older=older, newer=newer)
    if after is not None:
        rows = rows.filter(older_than(after))
    found = list(rows.order_by("-created_at", "-pk")[: size + 1])
    page = found[:size]
    older = Cursor.of(page[-1]) if len(found) > size else None
    newer = Cursor.of(page[0]) if page and after is not None else None
    return UsagePage(records=page, older=older, newer=newer)


def keyset_batches(
    records: QuerySet[UsageRecord], fields: Sequence[str], *, size: int = EXPORT_BATCH_ROWS
) -> Iterator[list[tuple[Any, ...]]]:
    """Every record's `fields` as tuples, newest first, `size` at a time: one query per batch, each from a key."""
    rows = with_unpriced(records).order_by("-created_at", "-pk").values_list(*fields, "created_at", "pk")
    cursor: Cursor | None = None
    # Bounded by the records: each batch starts strictly after the last, and a short one is the end.
    while True:
        batch = list((rows if cursor is None else rows.filter(older_than(cursor)))[:size])
        if batch:
            *_, created_at, pk = batch[-1]
            cursor = Cursor(created_at=created_at, pk=pk)
            yield [row[:-2] for row in batch]
        if len(batch) < size:
            return
