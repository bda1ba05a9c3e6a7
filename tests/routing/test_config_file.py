"""export_config / import_config: the routing configuration as a YAML file, round trip, dry run, and refusals."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError

from routing.models import LanguageModel, ModelPrice, Provider, Route

pytestmark = pytest.mark.django_db


@pytest.fixture
def configured(make_model: Callable[..., LanguageModel], make_route: Callable[..., Route]) -> dict[str, Any]:
    cloud = Provider.objects.create(name="cloud", kind=Provider.Kind.OPENAI, base_url="https://api.example.com/v1")
    cloud.set_api_key("sk-very-secret-key")
    cloud.save()
    mini = make_model("mini", price=("0.10", "0.40"))
    big = make_model("big", provider=cloud, price=("2.50", "10.00"), capabilities=["tools"])
    auto = make_route("auto", [mini, big], description="everyday")
    auto.strategy, auto.settings = "budget", {"max_price": "0.01"}
    auto.full_clean()
    auto.save()
    return {"cloud": cloud, "mini": mini, "big": big, "auto": auto}


def export() -> str:
    out = io.StringIO()
    call_command("export_config", stdout=out)
    return out.getvalue()


def import_(tmp_path: Path, data: Any, *args: str) -> str:
    path = tmp_path / "routing.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    out = io.StringIO()
    call_command("import_config", str(path), *args, stdout=out)
    return out.getvalue()


def test_the_export_holds_every_setting_and_never_a_key(configured: dict[str, Any]) -> None:
    text = export()
    data = yaml.safe_load(text)
    assert "sk-very-secret-key" not in text and "api_key_encrypted" not in text
    assert [p["name"] for p in data["providers"]] == ["cloud", "sim"]
    big = next(m for m in data["models"] if m["public_id"] == "cloud/big")
    assert big["provider"] == "cloud" and big["capabilities"] == ["tools"]
    assert big["prices"] == [
        {
            "valid_from": "2025-01-01T00:00:00+00:00",
            "input_per_million": "2.500000",
            "output_per_million": "10.000000",
            "cached_input_per_million": None,
            "cache_write_per_million": None,
        }
    ]
    [auto] = data["routes"]
    assert (auto["strategy"], auto["settings"], auto["chain"]) == (
        "budget",
        {"max_price": "0.01"},
        ["sim/mini", "cloud/big"],
    )


def test_importing_its_own_export_changes_nothing(configured: dict[str, Any], tmp_path: Path) -> None:
    assert import_(tmp_path, export()).splitlines() == ["Applied 0 change(s)."]


def test_a_dry_run_shows_the_diff_and_changes_nothing_then_the_import_applies_it(
    configured: dict[str, Any], tmp_path: Path
) -> None:
    data = yaml.safe_load(export())
    mini = next(m for m in data["models"] if m["public_id"] == "sim/mini")
    mini["context_window"] = 65536
    mini["prices"].append(
        {"valid_from": "2026-12-01T00:00:00+00:00", "input_per_million": "0.08", "output_per_million": "0.30"}
    )
    data["providers"].append(
        {"name": "box", "kind": "ollama", "base_url": "http://127.0.0.1:11434", "keeps_no_data": True}
    )
    data["models"].append(
        {
            "public_id": "box/llama",
            "provider": "box",
            "upstream_name": "llama3",
            "context_window": 8192,
            "max_output_tokens": 2048,
        }
    )
    # A rule naming a route that only comes later in the file.
    data["routes"].insert(
        0,
        {
            "name": "front",
            "strategy": "rules",
            "settings": {"rules": [{"when": {"code": True}, "to": "private"}]},
            "chain": ["sim/mini"],
        },
    )
    data["routes"].append({"name": "private", "chain": ["box/llama"]})
    data["routes"][1]["chain"] = ["cloud/big"]
    data["routes"][1]["settings"] = {"max_price": "0.02"}

    shown = import_(tmp_path, data, "--dry-run").splitlines()
    assert shown == [
        "+ provider box",
        "~ model sim/mini: context_window 32768 → 65536",
        "+ price of sim/mini from 2026-12-01T00:00:00+00:00: in 0.08, out 0.30",
        "+ model box/llama",
        "+ route front",
        "+ route private",
        "~ route front: chain (empty) ⇒ sim/mini",
        "~ route auto: chain sim/mini → cloud/big ⇒ cloud/big",
        "~ route auto: settings {'max_price': '0.01'} → {'max_price': '0.02'}",
        "~ route private: chain (empty) ⇒ box/llama",
        "Dry run: 10 change(s) shown, none made.",
    ]
    assert not Provider.objects.filter(name="box").exists()
    assert LanguageModel.objects.get(public_id="sim/mini").context_window == 32768

    applied = import_(tmp_path, data).splitlines()
    assert applied[:-1] == shown[:-1] and applied[-1] == "Applied 10 change(s)."
    assert Provider.objects.get(name="box").keeps_no_data
    assert ModelPrice.objects.filter(model__public_id="sim/mini").count() == 2
    front = Route.objects.get(name="front")
    assert front.settings == {"rules": [{"name": "rule 1", "when": {"code": True}, "to": "private"}]}
    assert [s.model.public_id for s in Route.objects.get(name="auto").steps.all()] == ["cloud/big"]
    # The stored key stayed where it was.
    assert Provider.objects.get(name="cloud").api_key() == "sk-very-secret-key"
    assert import_(tmp_path, data).splitlines() == ["Applied 0 change(s)."]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["routes"][0].update(settings={"max_price": "free"}), "Route auto: settings: 'max_price' must be"),
        (lambda d: d["models"][0]["prices"][0].update(input_per_million="9.99"), "never by rewriting a past one"),
        (lambda d: d["models"][0].update(colour="blue"), "Model cloud/big: unknown field 'colour'"),
        (lambda d: d["models"][0].update(provider="nowhere"), "Model cloud/big: no provider named 'nowhere'"),
        (lambda d: d["routes"][0].update(chain=["sim/ghost"]), "Route auto: no model 'sim/ghost'"),
        (lambda d: d["models"][0].update(context_window=0), "context_window: Ensure this value is greater than"),
        (lambda d: d.update(version=7), "Not a Switchyard configuration file of version 1"),
    ],
)
def test_a_file_with_one_fault_changes_nothing_and_says_where(
    configured: dict[str, Any], tmp_path: Path, edit: Callable[[dict[str, Any]], None], message: str
) -> None:
    data = yaml.safe_load(export())
    data["providers"].append({"name": "new", "kind": "ollama", "base_url": "http://127.0.0.1:11434"})
    edit(data)
    with pytest.raises(CommandError, match="Nothing was changed") as refused:
        import_(tmp_path, data)
    assert message in str(refused.value)
    assert not Provider.objects.filter(name="new").exists()


def test_a_file_that_is_not_yaml_or_not_there_is_refused_in_words(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="is not valid YAML"):
        import_(tmp_path, "providers: [unclosed")
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("import_config", str(tmp_path / "missing.yaml"))
