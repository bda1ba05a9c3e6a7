"""Personal data in a prompt, found locally, and the providers it may go to.

A call to a route goes only to models whose provider keeps no data (marked
in the admin) or runs locally (Ollama, the simulator) when its request is
tagged `sensitive` (metadata `tags`, or x-switchyard-tags), or when
`find_personal_data` finds any of:

- `email`: an e-mail address;
- `phone`: a phone number written in international form (+ and 8 to 15
  digits) or in the North American (555) 123-4567 / 555-123-4567 forms;
- `card`: 13 to 19 digits, spaces or dashes between groups, that pass the
  Luhn check (so an order number rarely does);
- `iban`: a country code, two check digits and up to 30 letters or digits
  whose ISO 7064 mod-97 check gives 1;
- `national_id`: a US social security number (123-45-6789, without the
  numbers never issued) or a UK National Insurance number (AB 12 34 56 C).

Only the kinds found are kept (in the trace, in the log); the data never is.
The whole prompt is read: a detector that read part of it would leak the
rest. Every pattern is linear, so the time grows with the prompt's length
only (bench/routing_decisions.py).

A model asked for by name is the caller's own choice: it is refused only
when the request is tagged sensitive and its provider may keep data.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable

from routing.catalog import CatalogModel
from routing.providers.types import ChatRequest

SENSITIVE_TAG = "sensitive"
# Longer prompts are read on a thread, off the event loop (about 25 µs per KB: bench/routing_decisions.py).
INLINE_CHARS = 16_384
LOCAL_KINDS = frozenset({"ollama", "simulated"})

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}")
# Every phone, card and social security number lies in such a run of digits
# and separators. Finding the runs first costs one pass that starts only at a
# digit, "+" or "(" (a pattern that starts with a lookbehind is tried at every
# position, several times slower); the patterns below then read only the runs.
_NUMBER_RUN = re.compile(r"[+(\d][\d ().-]{5,60}\d")
_PHONES = (
    re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}(?!\w)"),
    re.compile(r"(?<!\w)\(\d{3}\) ?\d{3}-\d{4}(?!\w)"),
    re.compile(r"(?<![\w.-])\d{3}[-.]\d{3}[-.]\d{4}(?![\w.-])"),
)
_CARD = re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])")
_SSN = re.compile(r"(?<![\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])")
_IBAN = re.compile(r"[A-Z][A-Z]\d\d(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])")
_NINO = re.compile(r"[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D](?![A-Za-z0-9])")
_NINO_NEVER = ("BG", "GB", "KN", "NK", "NT", "TN", "ZZ")


def find_personal_data(texts: Iterable[str]) -> tuple[str, ...]:
    """The kinds of personal data in `texts`, in a fixed order; () if none."""
    found: set[str] = set()
    for text in texts:
        if not text:
            continue
        if "email" not in found and "@" in text and _EMAIL.search(text):
            found.add("email")
        for run in _NUMBER_RUN.finditer(text):
            # With a character of context on each side, for the patterns' boundaries.
            number = text[max(run.start() - 1, 0) : run.end() + 1]
            if any(8 <= _digits(m.group()) <= 15 for phone in _PHONES for m in phone.finditer(number)):
                found.add("phone")
            if any(_luhn(card.group()) for card in _CARD.finditer(number)):
                found.add("card")
            if _SSN.search(number):
                found.add("national_id")
        if any(_iban_valid(m.group()) for m in _IBAN.finditer(text) if not _glued(text, m.start())):
            found.add("iban")
        nino = (m for m in _NINO.finditer(text) if not _glued(text, m.start()))
        if any(m.group()[:2] not in _NINO_NEVER for m in nino):
            found.add("national_id")
    return tuple(kind for kind in ("email", "phone", "card", "iban", "national_id") if kind in found)


def _glued(text: str, start: int) -> bool:
    """Whether a match starts right after a letter or digit: the end of a longer word, not a code of its own."""
    return start > 0 and text[start - 1].isalnum()


async def afind_personal_data(request: ChatRequest) -> tuple[str, ...]:
    """find_personal_data over every text of the request, for an event loop: a long prompt is read on a thread."""
    texts = list(request_texts(request))
    if sum(len(text) for text in texts) <= INLINE_CHARS:
        return find_personal_data(texts)
    return await asyncio.to_thread(find_personal_data, texts)


def request_texts(request: ChatRequest) -> Iterable[str]:
    """Every text of the request that reaches a provider: the system prompt, the messages, the tool calls' arguments."""
    yield request.system or ""
    for message in request.messages:
        yield message.content
        for call in message.tool_calls:
            yield call.arguments


def keeps_no_data(model: CatalogModel) -> bool:
    """Whether the model's provider is marked as keeping no data, or runs locally."""
    return model.provider_keeps_no_data or model.provider_kind in LOCAL_KINDS


def _digits(text: str) -> int:
    return sum(c.isdigit() for c in text)


def _luhn(candidate: str) -> bool:
    digits = [int(c) for c in candidate if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, digit in enumerate(reversed(digits)):
        if i % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def _iban_valid(candidate: str) -> bool:
    compact = candidate.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(c, 36)) for c in rearranged)
    return int(number) % 97 == 1
