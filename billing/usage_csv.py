"""The usage ledger as CSV, streamed in constant memory: the admin's list, and a team's or a user's export.

Rows are read as tuples (never model instances) in chunks, and each chunk
is written out before the next is read, so millions of records cost no
more memory than a chunk. Every row carries the unit prices its call was
booked at, so that it alone tells its cost.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from decimal import Decimal
from typing import Any

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.db.models import BooleanField, ExpressionWrapper, QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from django.utils import timezone

from billing.models import UNPRICED, UsageRecord

# (header, the field it holds, across relations as values_list takes them), in order.
COLUMNS = (
    ("created_at", "created_at"),
    ("request_id", "request_id"),
    ("user", "user__username"),
    ("team", "team__slug"),
    ("api_key_prefix", "api_key__prefix"),
    ("requested", "requested"),
    ("route", "route"),
    ("model", "model"),
    ("provider", "provider"),
    ("status", "status"),
    ("error_kind", "error_kind"),
    ("input_tokens", "input_tokens"),
    ("output_tokens", "output_tokens"),
    ("cached_input_tokens", "cached_input_tokens"),
    ("cache_write_tokens", "cache_write_tokens"),
    ("reasoning_tokens", "reasoning_tokens"),
    ("tokens_estimated", "tokens_estimated"),
    ("input_price_per_million", "input_price_per_million"),
    ("output_price_per_million", "output_price_per_million"),
    ("cached_input_price_per_million", "cached_input_price_per_million"),
    ("cache_write_price_per_million", "cache_write_price_per_million"),
    ("cost_usd", "cost_usd"),
    ("unpriced", "unpriced"),
    ("latency_ms", "latency_ms"),
    ("ttft_ms", "ttft_ms"),
)
CHUNK_ROWS = 2000

# A spreadsheet runs a cell that starts with one of these as a formula (OWASP's
# "CSV injection"); user names and requested models are whatever a caller chose.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class Echo:
    """A file whose write returns the line: csv.writer formats rows, the response sends them."""

    def write(self, line: str) -> str:
        return line


FIELDS = tuple(path for _, path in COLUMNS)


def usage_csv_response(request: HttpRequest, records: QuerySet[UsageRecord]) -> StreamingHttpResponse:
    """The records, in their order, as a CSV attachment whose rows are read while it is sent."""
    rows = records.annotate(unpriced=ExpressionWrapper(UNPRICED, output_field=BooleanField())).values_list(*FIELDS)
    return csv_response(request, _chunked(rows.iterator(chunk_size=CHUNK_ROWS)), name="usage-records")


def csv_response(
    request: HttpRequest, chunks: Iterator[Sequence[tuple[Any, ...]]], *, name: str
) -> StreamingHttpResponse:
    """A CSV attachment of COLUMNS: the header, then each chunk of rows (FIELDS' values), read while it is sent."""
    lines = csv_lines(chunks)
    # Under ASGI, Django reads a synchronous iterator whole before sending any of it.
    content = _async_lines(lines) if isinstance(request, ASGIRequest) else lines
    stamp = f"{timezone.now().astimezone(dt.UTC):%Y%m%dT%H%M%SZ}"
    return StreamingHttpResponse(
        content,
        content_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}-{stamp}.csv"'},
    )


def _chunked(rows: Iterable[tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    chunk: list[tuple[Any, ...]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == CHUNK_ROWS:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def csv_lines(chunks: Iterator[Sequence[tuple[Any, ...]]]) -> Iterator[str]:
    """The header, then the lines of each chunk as one string."""
    writer = csv.writer(Echo())
    yield writer.writerow([header for header, _ in COLUMNS])
    for chunk in chunks:
        yield "".join(writer.writerow([_cell(value) for value in row]) for row in chunk)


async def _async_lines(lines: Iterator[str]) -> AsyncIterator[str]:
    # Each chunk is read on the request's database thread, as QuerySet.aiterator does.
    next_lines = sync_to_async(lambda: next(lines, None))
    while (text := await next_lines()) is not None:
        yield text


def _cell(value: object) -> str:
    """A value as text a spreadsheet reads back unchanged: exact decimals, UTC times, text never a formula."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, Decimal):
        return f"{value:f}"
    if not isinstance(value, str):
        return str(value)
    return f"'{value}" if value.startswith(FORMULA_STARTS) else value
