"""The learned router: trained on a small graded CSV it routes held-out prompts better than random."""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import random
import struct
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from bench import routing_eval, routing_eval_seeds
from routing.catalog import Catalog, CatalogRoute, LoadedRouter
from routing.learned.evaluation import sweep, threshold_for_share
from routing.learned.graded import GradedDataError, graded_files, graded_rows
from routing.learned.router import LearnedRouter, TrainingError, router_train
from routing.providers.types import ChatRequest, Message
from routing.strategies.base import Hints, SettingsError, Situation
from routing.strategies.learned import Learned
from tests.graded_csv import STRONG, WEAK, graded_csv

NAMES = frozenset({"w/mini", "s/pro"})
SETTINGS = {"weak": "w/mini", "strong": "s/pro", "strong_share": 0.4}


def test_it_routes_held_out_prompts_better_than_random() -> None:
    train = graded_rows(graded_csv(200, seed=1), weak=WEAK, strong=STRONG)
    test = graded_rows(graded_csv(200, seed=2), weak=WEAK, strong=STRONG)
    router = router_train(train, target_share=0.4)
    draw = random.Random(3)

    learned = sweep(test, [router.score(r.prompt) for r in test])
    by_chance = sweep(test, [draw.random() for _ in test])

    assert learned.apgr > by_chance.apgr
    assert learned.cpt(0.8) is not None and learned.cpt(0.8) < (by_chance.cpt(0.8) or 1.0)


def test_its_threshold_sends_at_most_the_target_share_of_its_training_prompts_up() -> None:
    train = graded_rows(graded_csv(200, seed=1), weak=WEAK, strong=STRONG)
    router = router_train(train, target_share=0.3)

    sent_up = sum(router.wants_strong(router.score(r.prompt)) for r in train)

    assert 0 < sent_up <= 0.3 * len(train)


def test_a_stored_router_scores_as_the_trained_one() -> None:
    router = router_train(graded_rows(graded_csv(100, seed=1), weak=WEAK, strong=STRONG), target_share=0.3)
    loaded = LearnedRouter.from_bytes(router.to_bytes())

    prompt = "What about the integral number 7?"
    assert loaded.score(prompt) == pytest.approx(router.score(prompt), abs=1e-5)
    assert loaded.threshold == router.threshold
    assert loaded.strong_facts == router.strong_facts and len(router.strong_facts) == 5


def test_its_score_is_the_strong_tiers_chance_of_answering_well_minus_the_weak_ones() -> None:
    router = router_train(graded_rows(graded_csv(100, seed=1), weak=WEAK, strong=STRONG), target_share=0.3)

    prediction = router.predict("What about the eigenvalue number 7?")

    assert prediction.score == pytest.approx(prediction.strong_ok - prediction.weak_ok)


def test_a_format_2_model_still_routes_by_the_log_odds_its_threshold_was_set_in() -> None:
    router = router_train(graded_rows(graded_csv(100, seed=1), weak=WEAK, strong=STRONG), target_share=0.3)
    blob = router.to_bytes()
    (size,) = struct.unpack_from("<I", blob)
    header = json.loads(blob[4 : 4 + size])
    header["format"] = 2
    del header["scale"]
    old_header = json.dumps(header).encode()

    loaded = LearnedRouter.from_bytes(struct.pack("<I", len(old_header)) + old_header + blob[4 + size :])

    prediction = loaded.predict("What about the eigenvalue number 7?")
    log_odds = [math.log(p / (1 - p)) for p in (prediction.strong_ok, prediction.weak_ok)]
    assert prediction.score == pytest.approx(log_odds[0] - log_odds[1], abs=1e-4)


def test_a_damaged_model_is_a_value_error() -> None:
    blob = router_train(graded_rows(graded_csv(100, seed=1), weak=WEAK, strong=STRONG), target_share=0.3).to_bytes()

    for damaged in (b"\x01", blob[:3], b"\x02\x00\x00\x00{}", blob[:100]):
        with pytest.raises(ValueError, match="router model"):
            LearnedRouter.from_bytes(damaged)


def test_prompts_that_never_tell_the_tiers_apart_train_nothing() -> None:
    same = graded_rows("prompt,a,b\n" + "".join(f"q{i},True,True\n" for i in range(20)), weak="a", strong="b")

    with pytest.raises(TrainingError, match="tells the tiers apart"):
        router_train(same, target_share=0.3)


def test_a_csv_without_the_columns_named_says_which() -> None:
    with pytest.raises(GradedDataError, match="no column 'gpt-4'"):
        graded_rows("prompt,mixtral\nhello,True\n", weak="mixtral", strong="gpt-4")
    with pytest.raises(GradedDataError, match="line 2: 'maybe' is not True or False"):
        graded_rows("prompt,a,b\nhello,maybe,True\n", weak="a", strong="b")


def test_a_tie_at_the_cut_stays_below_the_threshold() -> None:
    assert threshold_for_share([0.9, 0.5, 0.5, 0.1], 0.5) == 0.9


def _situation(learned: dict[str, LoadedRouter], prompt: str) -> Situation:
    now = dt.datetime(2026, 12, 6, tzinfo=dt.UTC)
    route = CatalogRoute("smart", "", True, None, None, "", ("w/mini", "s/pro"), now, strategy="learned")
    catalog = Catalog(version=1, routes={"smart": route}, learned=learned)
    request = ChatRequest(messages=(Message(role="user", content=prompt),))
    return Situation(catalog, route, request, Hints(), ("w/mini", "s/pro"), "user:1", now)


def test_the_strategy_sends_a_hard_prompt_up_and_names_its_models_version() -> None:
    # 40% of the prompts are hard: every one of them may go up.
    router = router_train(graded_rows(graded_csv(200, seed=1), weak=WEAK, strong=STRONG), target_share=0.5)
    learned = {"smart": LoadedRouter(7, router)}

    hard = Learned().decide(_situation(learned, "Question 1: what about the eigenvalue number 3?"), SETTINGS)
    easy = Learned().decide(_situation(learned, "Question 2: what about the capital number 3?"), SETTINGS)

    assert hard.chain == ("s/pro", "w/mini") and easy.chain == ("w/mini", "s/pro")
    assert hard.inputs["version"] == 7 and hard.inputs["score"] >= hard.inputs["threshold"] > easy.inputs["score"]
    assert hard.reason.startswith("model v7: score") and hard.reason.endswith("→ s/pro")
    assert 0 < hard.inputs["p_weak_ok"] < easy.inputs["p_weak_ok"] < 1


def test_the_strategy_with_no_model_yet_asks_the_weak_model_and_says_so() -> None:
    decision = Learned().decide(_situation({}, "anything"), SETTINGS)

    assert decision.chain == ("w/mini", "s/pro")
    assert decision.reason == "no model trained yet → w/mini"


def test_settings_name_two_different_models_and_a_share() -> None:
    with pytest.raises(SettingsError, match="two different models"):
        Learned().check_settings({"weak": "s/pro", "strong": "s/pro"}, NAMES)
    with pytest.raises(SettingsError, match="from 0 to 1"):
        Learned().check_settings({**SETTINGS, "strong_share": 30}, NAMES)
    assert Learned().check_settings({"weak": "w/mini", "strong": "s/pro"}, NAMES)["strong_share"] == 0.3


def test_routing_eval_runs_on_a_tiny_csv_and_drops_contaminated_prompts(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    (tmp_path / "train" / "a.csv").write_text(graded_csv(120, seed=1))
    test_csv = graded_csv(60, seed=2)
    (tmp_path / "test" / "b.csv").write_text(test_csv)
    dropped = test_csv.splitlines()[1].split(",")[0]
    (tmp_path / "test" / "contaminated_prompts.jsonl").write_text(json.dumps({"eval_prompt": dropped}) + "\n")
    out = io.StringIO()

    with redirect_stdout(out):
        routing_eval.main(
            [
                *("--train", str(tmp_path / "train" / "a.csv"), "--test", str(tmp_path / "test" / "b.csv")),
                *("--weak", WEAK, "--strong", STRONG, "--json"),
            ]
        )

    results = json.loads(out.getvalue())
    assert set(results) == {"random", "complexity", "learned"}
    assert results["learned"]["test_prompts"] == 59
    assert results["learned"]["apgr"] > results["random"]["apgr"]
    for figures in results.values():
        assert 0 <= figures["strong_share"] <= 1 and figures["decision_ms_p50"] >= 0


def test_routing_eval_seeds_gives_each_strategy_its_mean_and_spread_over_disjoint_splits(tmp_path: Path) -> None:
    for subject in range(4):
        (tmp_path / f"subject{subject}.csv").write_text(graded_csv(60, seed=subject))
    files = sorted(tmp_path.glob("*.csv"))
    rows = graded_files(files, weak=WEAK, strong=STRONG)
    out = io.StringIO()

    with redirect_stdout(out):
        routing_eval_seeds.main(
            [str(tmp_path), "--weak", WEAK, "--strong", STRONG, "--seed", "1", "--seed", "2", "--json"]
        )

    results = json.loads(out.getvalue())
    learned = results["summaries"]["learned"]["random"]
    assert learned["seeds"] == 2 and learned["apgr_min"] <= learned["apgr_mean"] <= learned["apgr_max"]
    assert [run["seed"] for run in results["runs"]["complexity"]["subject"]] == [1, 2]
    for by, key in (("random", "prompt"), ("subject", "group")):
        train, test = routing_eval_seeds.split(rows, files, by=by, seed=1)
        assert not {getattr(r, key) for r in train} & {getattr(r, key) for r in test}
        assert len(train) + len(test) == len(rows)
