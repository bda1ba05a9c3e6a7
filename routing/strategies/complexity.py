"""Which kind of task a prompt is: coding, writing, reasoning or a quick question.

Local and instant (regular expressions, no model call), and free of Django so
that routing strategies can call it on every request.

Scoring rules
-------------
Every rule below that matches the prompt adds its weight to its category,
once: a cue counts for being present, not for how often it repeats, so a long
prompt does not win by sheer length.

- Strong cues weigh 3: a code fence, an error trace, code-like lines, a
  programming language or library name, "write a function/script/query";
  "write/draft a poem/email/essay/…", "rewrite/proofread/paraphrase";
  "prove", "why", "step by step", "calculate/solve/derive".
- Weaker cues weigh 1 or 2: coding words ("bug", "compile", "API"), a bare
  genre word ("poem", "story"), "summarise/translate/tone", maths vocabulary,
  arithmetic like "17 * 23", puzzles, trade-offs.
- A short prompt (at most SHORT_WORDS words, with no code fence) scores 2 for
  quick, and 1 more when it reads as a question (a question mark, or a
  leading what/who/when/…). So "Who wrote the novel 1984?" stays quick
  despite "novel", while a strong cue ("Why is the sky blue?") or a weaker
  cue in a short statement ("A haiku about the sea") takes it over.

Only the first HEAD_CHARS and last TAIL_CHARS characters are read: the
instruction is nearly always at the start or the end of a long paste, and the
time does not grow with the prompt's size. The sample is lowercased once and
most rules are searched in it without IGNORECASE; each word list is led by a
look-ahead at its first letters (_words).

The highest total wins. Ties go to the more demanding category, in the order
coding, reasoning, writing, quick: sending a hard task to a small model costs
more than the reverse. A long prompt that matches nothing is reasoning, for
the same reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The values of playground.models.Category, repeated so that this module needs no Django.
CODING = "coding"
WRITING = "writing"
REASONING = "reasoning"
QUICK = "quick"
CATEGORIES = (CODING, REASONING, WRITING, QUICK)
"""Every category, most demanding first: the tie-break order."""

SHORT_WORDS = 12
HEAD_CHARS = 3000
TAIL_CHARS = 1000

STRONG = 3
MEDIUM = 2
WEAK = 1


@dataclass(frozen=True)
class Rule:
    """A cue: it matches when any of its patterns is found, the lowercase ones in the lowercased sample."""

    category: str
    weight: int
    # Written in lowercase and searched in the lowercased sample: one lowering instead of IGNORECASE in every rule.
    lowercase: tuple[re.Pattern[str], ...] = ()
    # Searched in the sample as written, for cues whose case matters (class names, SQL keywords, capitalised names).
    cased: tuple[re.Pattern[str], ...] = ()

    def matches(self, sample: str, lowered: str) -> bool:
        return any(p.search(lowered) for p in self.lowercase) or any(p.search(sample) for p in self.cased)


def _rule(category: str, weight: int, *lowercase: str, cased: tuple[str, ...] = ()) -> Rule:
    return Rule(
        category,
        weight,
        tuple(re.compile(p, re.MULTILINE) for p in lowercase),
        tuple(re.compile(p, re.MULTILINE) for p in cased),
    )


def _words(*alternatives: str, before: str = r"\b", after: str = r"\b") -> str:
    """A pattern for any of `alternatives`, led by a look-ahead at their first characters.

    re tries a pattern at every position of the text; the look-ahead turns most
    positions away at once, where the alternation would try each word there. It
    is what keeps score_prompt's rules cheap on a long sample (BENCHMARKS.md).
    Each alternative must start with a literal character (escaped or not).
    """
    firsts = {alt[1] if alt.startswith("\\") else alt[0] for alt in alternatives}
    if not all(first.isalnum() or first in ".+#-" for first in firsts):
        raise ValueError(f"an alternative starts with a pattern, not a character: {sorted(firsts)}")
    charset = "".join(re.escape(first) for first in sorted(firsts))
    return f"(?=[{charset}]){before}(?:{'|'.join(alternatives)}){after}"


_LANGUAGES = (
    r"python|javascript|typescript|java|kotlin|scala|golang|c\+\+|c#|\.net|ruby|php|perl|haskell|elixir|"
    r"erlang|clojure|ocaml|fortran|cobol|matlab|lua|swiftui|objective-c|assembly|sql|postgres(?:ql)?|"
    r"mysql|sqlite|bash|zsh|powershell|shell script|regex|regexp|html|css|json|yaml|dockerfile|docker|kubernetes|"
    r"terraform|svelte|django|flask|fastapi|node\.?js|npm|pandas|numpy|pytorch|tensorflow|git"
).split("|")
# Names that are also English words count only when capitalised.
_CAPITALISED_LANGUAGES = ("React", "Vue", "Angular", "Rust", "Dart")

_GENRES = (
    r"poem|haiku|sonnet|limerick|song|lyrics|story|stories|essay|e-?mail|letter|cover letter|blog(?: post)?|"
    r"article|speech|toast|tweet|linkedin post|bio|slogan|tagline|press release|eulogy|fairy tale|novel|"
    r"chapter|dialogue|screenplay|newsletter|product description|ad copy|caption|invitation|apology"
).split("|")

# A language's name is not part of a longer name ("javascript" is not "java"; "c++" is not "c").
_NAME_BEFORE, _NAME_AFTER = r"(?<![\w+#.])", r"(?![\w+#])"

RULES: tuple[Rule, ...] = (
    # Coding
    _rule(CODING, STRONG, r"```"),
    _rule(
        CODING,
        STRONG,
        _words(
            r"traceback \(most recent call last\)",
            "segmentation fault",
            "core dumped",
            "panicked at",
            "undefined is not a function",
            before="",
            after="",
        ),
        _words("stack ?trace", r"exit (?:code|status) \d+"),
        r"^\s*file \".+\", line \d+|^\s+at \S+ \(.+:\d+:\d+\)",
        cased=(r"(?=[A-Z])\b[A-Z]\w*(?:Error|Exception)\b",),
    ),
    _rule(
        CODING,
        STRONG,
        cased=(
            r"^\s*(?:def |class \w+[:(]|import \w|from \w+(?:\.\w+)* import |#include|function \w+\(|"
            r"(?:const|let|var) \w+ =|fn \w+\(|func \w+\(|public (?:static )?\w+|SELECT .+ FROM )",
            r"[;{}]\s*$",
        ),
    ),
    _rule(
        CODING,
        STRONG,
        _words(*_LANGUAGES, before=_NAME_BEFORE, after=_NAME_AFTER),
        cased=(_words(*_CAPITALISED_LANGUAGES, before=_NAME_BEFORE, after=_NAME_AFTER),),
    ),
    _rule(
        CODING,
        STRONG,
        _words("write", "implement", "fix", "debug", "refactor", r"optimi[sz]e", "review")
        + ".{0,40}"
        + _words(
            "function",
            "method",
            "class",
            "script",
            "program",
            "query",
            "regex",
            "endpoint",
            "unit tests?",
            "code",
            "bug",
            "loop",
            "algorithm",
        ),
    ),
    _rule(
        CODING,
        WEAK,
        _words(
            "code",
            "coding",
            "bug",
            "debug",
            "compile[rd]?",
            "refactor",
            "api",
            "sdk",
            "library",
            "variable",
            "recursion",
            "runtime",
            "big-?o",
            "repository",
            "pull request",
            "unit tests?",
            "linter",
            "cli",
        ),
    ),
    # Writing
    _rule(
        WRITING,
        STRONG,
        _words("write", "draft", "compose", "pen", "craft", "create", "give me", "come up with")
        + ".{0,40}"
        + _words(*_GENRES),
    ),
    _rule(
        WRITING,
        STRONG,
        _words(
            "rewrite",
            "re-?word",
            "rephrase",
            "paraphrase",
            "proof-?read",
            "copy-?edit",
            "polish",
            r"make (?:it|this) (?:sound )?(?:more |less )?(?:formal|casual|concise|friendly|persuasive|professional)",
            "in the style of",
        ),
    ),
    _rule(WRITING, MEDIUM, _words(*_GENRES)),
    _rule(
        WRITING, MEDIUM, _words("summari[sz]e", "summary of", "translate", "tone", "wording", "outline for", r"rhym\w*")
    ),
    # Reasoning
    _rule(
        REASONING,
        STRONG,
        _words(
            "prove",
            "proof",
            "show that",
            "why",
            "step[- ]by[- ]step",
            "explain (?:how|why)",
            "calculate",
            "compute",
            "solve",
            "derive",
            "work out",
            "how (?:many|much|long|far) would",
        ),
    ),
    _rule(
        REASONING,
        MEDIUM,
        _words(
            "probability",
            "odds",
            "expected value",
            "theorem",
            "lemma",
            "equation",
            "integral",
            "derivative",
            "matrix",
            "prime",
            "puzzle",
            "riddle",
            "logic(?:al)?",
            "paradox",
            "trade-?offs?",
            "pros and cons",
            "compare",
            "estimate",
            "reason(?:ing)?",
            "think (?:it )?through",
            "how many",
        ),
    ),
    _rule(REASONING, MEDIUM, r"(?=[\dx])(?:\d\s*[-+*/^×÷]\s*\(?\d|\bx\s*[=<>]\s*\d|\d\s*%)"),
)

_QUESTION_START = re.compile(
    r"^\s*(?:what|who|whom|whose|when|where|which|how|is|are|was|were|do|does|did|can|could|should|will|name)\b",
    re.IGNORECASE,
)


def _sample(text: str) -> str:
    return text if len(text) <= HEAD_CHARS + TAIL_CHARS else f"{text[:HEAD_CHARS]}\n{text[-TAIL_CHARS:]}"


def score_prompt(text: str) -> dict[str, int]:
    """The score of every category for this prompt, under the rules in the module docstring."""
    scores = dict.fromkeys(CATEGORIES, 0)
    sample = _sample(text)
    lowered = sample.lower()
    for rule in RULES:
        if rule.matches(sample, lowered):
            scores[rule.category] += rule.weight
    if len(text.split()) <= SHORT_WORDS and "```" not in text:
        scores[QUICK] += 2
        if text.rstrip().endswith("?") or _QUESTION_START.match(text):
            scores[QUICK] += 1
    return scores


def classify_prompt(text: str) -> str:
    """The category of a prompt: one of "coding", "writing", "reasoning", "quick"."""
    scores = score_prompt(text)
    best = max(scores.values())
    if best == 0:
        return REASONING
    # max() returns the first of equals, and CATEGORIES lists the most demanding first.
    return max(CATEGORIES, key=lambda category: scores[category])


# How far each signal of a demanding prompt moves complexity_score, and the length at which length stops counting.
_DEMANDING = {CODING: 1.0, REASONING: 1.0, WRITING: 0.5}
_LONG_WORDS = 400


def complexity_score(text: str) -> float:
    """How demanding a prompt reads, from 0 (a quick question) to 1: its coding, reasoning and writing cues and length.

    The cues are score_prompt's; a quick prompt's score counts against it. Length
    adds up to a fifth, growing with the words up to _LONG_WORDS.
    """
    scores = score_prompt(text)
    cues = sum(weight * scores[category] for category, weight in _DEMANDING.items()) - scores[QUICK]
    # The most the rules can add is about 20 (every strong cue of coding and reasoning).
    cue_part = max(0.0, min(1.0, cues / 20))
    length_part = min(1.0, len(text.split()) / _LONG_WORDS)
    return round(0.8 * cue_part + 0.2 * length_part, 4)
