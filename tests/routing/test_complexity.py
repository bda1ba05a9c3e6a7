from __future__ import annotations

import pytest

from playground.models import Category
from routing.strategies.complexity import CATEGORIES, RULES, classify_prompt, score_prompt

PROMPTS = [
    # Coding
    ("```python\nprint(sum(range(10)))\n```\nWhat does this print?", "coding"),
    ("Why does this fail?\nTraceback (most recent call last):\n  File \"app.py\", line 3\nKeyError: 'x'", "coding"),
    ("I get TypeError: undefined is not a function when I click the button", "coding"),
    ("Write a function that reverses a linked list", "coding"),
    ("What's the difference between a list and a tuple in Python?", "coding"),
    ("How do I center a div with CSS?", "coding"),
    ("Refactor this:\ndef f(x):\n    return x*2", "coding"),
    ("My React component re-renders on every keystroke, how do I stop that?", "coding"),
    ("Write a SQL query that returns the ten customers with the highest total order value last month", "coding"),
    ("The build exits with exit code 137 in CI but works locally, what could cause it", "coding"),
    # Writing
    ("Write a poem about autumn leaves", "writing"),
    ("Draft an email to my landlord asking to fix the heating before winter", "writing"),
    ("Write a 500-word essay on the causes of the French Revolution", "writing"),
    ("A haiku about the sea", "writing"),
    ("Rewrite this paragraph so it sounds more professional: hey guys, the thing is late again, sorry", "writing"),
    ("Compose a short toast for my sister's wedding, warm and a little funny", "writing"),
    ("Give me three tagline ideas for a bakery that only sells sourdough", "writing"),
    # Reasoning
    ("Prove that the square root of 2 is irrational", "reasoning"),
    ("Why is the sky blue?", "reasoning"),
    ("Explain step by step how to solve 3x + 5 = 20", "reasoning"),
    ("Calculate the compound interest on 1000 dollars at 5% over 10 years", "reasoning"),
    (
        "A bat and a ball cost 1.10 in total and the bat costs 1.00 more than the ball; how much is the ball?",
        "reasoning",
    ),
    (
        "What are the trade-offs between renting and buying a house for someone who may move in three years?",
        "reasoning",
    ),
    (
        "My team has been arguing for weeks about whether we should hire two juniors or one senior engineer this "
        "quarter and I would like a careful analysis of what each choice would mean for us over the next year",
        "reasoning",
    ),
    # Quick
    ("What is the capital of France?", "quick"),
    ("hi", "quick"),
    ("", "quick"),
    ("Who wrote the novel 1984?", "quick"),
    ("What is 2+2?", "quick"),
    ("How did the audience react to the first screening?", "quick"),
    ("Translate 'good morning' into Spanish", "writing"),
    ("When was the Eiffel Tower built", "quick"),
]


@pytest.mark.parametrize(("prompt", "expected"), PROMPTS)
def test_it_classifies_each_prompt_of_the_table(prompt: str, expected: str) -> None:
    assert classify_prompt(prompt) == expected


def test_its_categories_are_exactly_the_model_choices() -> None:
    assert set(CATEGORIES) == set(Category.values)
    assert {rule.category for rule in RULES} <= set(CATEGORIES)


def test_it_counts_a_cue_once_however_often_it_repeats() -> None:
    once = score_prompt("Why? " + "filler " * 20)
    many = score_prompt("Why? " * 10 + "filler " * 20)

    assert once == many


def test_a_strong_cue_outweighs_the_bonus_of_a_short_question() -> None:
    scores = score_prompt("Prove it?")

    assert scores["quick"] == 3
    assert scores["reasoning"] == 3
    assert classify_prompt("Prove it?") == "reasoning"


def test_it_does_not_mistake_ordinary_words_for_error_names() -> None:
    assert score_prompt("the terror of the night, described in vivid detail for my horror anthology")["coding"] == 0


def test_it_reads_the_instruction_at_the_end_of_a_long_paste() -> None:
    assert classify_prompt("lorem ipsum dolor " * 5_000 + "\nWrite a poem about the text above.") == "writing"


def test_it_reads_cues_whatever_their_case() -> None:
    assert classify_prompt("WRITE A POEM ABOUT THE SEA, PLEASE, IN FOUR LINES AND WITH A RHYME") == "writing"
    assert score_prompt("TRACEBACK (MOST RECENT CALL LAST): it crashed")["coding"] == 3
    assert score_prompt("Why Does Postgres Lock The Table")["coding"] == 3


def test_it_counts_a_name_that_is_also_a_word_only_when_capitalised() -> None:
    assert score_prompt("My React app is slow")["coding"] == 3
    assert score_prompt("How do plants react to light")["coding"] == 0
    assert score_prompt("a KeyError in my dict lookup")["coding"] == 3
    assert score_prompt("an Error occurred")["coding"] == 0
