"""Vocabulary: part conditions, checklist schema, grade scale, policy and decisions."""

from __future__ import annotations

import json

import pytest

from fusion.policy import ConfigError, Decision, load_policy, policy_from_dict
from tabular.schema import CHECKS, parse_device_info
from vision.conditions import SCREEN_CONDITIONS, SHELL_CONDITIONS, parse_condition_set

GOOD_DEVICE = {
    "brand": "Apple", "model": "iPhone 12", "storage_gb": 128, "unlocked": True,
    "battery_health_pct": 91, "checks": dict.fromkeys(CHECKS, True),
}


def test_part_conditions_are_the_product_vocabulary():
    assert SCREEN_CONDITIONS == ("flawless", "light_scratches", "heavy_scratches", "cracked")
    assert SHELL_CONDITIONS == ("flawless", "light_wear", "heavy_wear", "cracked")
    assert parse_condition_set("flawless|light_scratches", "screen") == {
        "flawless", "light_scratches"}
    assert parse_condition_set("  ", "shell") is None
    with pytest.raises(ValueError, match="unknown shell condition 'light_scratches'"):
        parse_condition_set("light_scratches", "shell")


def test_device_info_json_round_trip():
    info = parse_device_info(json.dumps(GOOD_DEVICE))
    assert info.failed_checks == []
    assert json.loads(info.model_dump_json()) == GOOD_DEVICE
    info = parse_device_info({**GOOD_DEVICE, "battery_health_pct": None,
                              "checks": {**GOOD_DEVICE["checks"], "wifi": False}})
    assert info.failed_checks == ["wifi"]


@pytest.mark.parametrize(("change", "field"), [
    ({"colour": "red"}, "colour: unknown field"),
    ({"storage_gb": "128"}, "storage_gb"),
    ({"storage_gb": 0}, "storage_gb"),
    ({"battery_health_pct": 140}, "battery_health_pct"),
    ({"unlocked": "yes"}, "unlocked"),
    ({"checks": {**dict.fromkeys(CHECKS, True), "nfc": True}}, "checks.nfc: unknown field"),
    ({"checks": {c: True for c in CHECKS if c != "wifi"}}, "checks.wifi: Field required"),
    ({"checks": {**dict.fromkeys(CHECKS, True), "wifi": 1}}, "checks.wifi"),
    ({"brand": ""}, "brand"),
])
def test_device_info_errors_name_the_field(change, field):
    with pytest.raises(ValueError, match="invalid device info") as err:
        parse_device_info({**GOOD_DEVICE, **change})
    assert field in str(err.value)


def test_bad_json_is_a_clear_error():
    with pytest.raises(ValueError, match="invalid device info"):
        parse_device_info("{not json")


def test_default_policy_follows_the_marketplace_criteria():
    p = load_policy()
    assert p.grades == ("excellent", "good", "fair", "broken")
    assert p.grade("flawless", "flawless") == "excellent"
    assert p.grade("flawless", "light_wear") == "good"
    assert p.grade("light_scratches", "flawless") == "fair"  # good needs a scratch-free screen
    assert p.grade("flawless", "heavy_wear") == "fair"
    assert p.grade("cracked", "flawless") == "broken"
    assert p.grade("flawless", "cracked") == "broken"
    assert p.grade("flawless", "flawless", failed_checks=["wifi"]) == "broken"
    assert p.grade("flawless", "flawless", battery_health_pct=79) == "broken"
    assert p.grade("flawless", "flawless", battery_health_pct=80) == "excellent"
    assert p.grade() == "excellent"  # nothing known caps nothing
    caps = p.caps("light_scratches", "flawless", ["sim_tray"])
    assert [(c.rule, c.grade) for c in caps] == [
        ("screen", "fair"), ("shell", "excellent"), ("failed_checks", "broken")]


def test_decisions_follow_the_gap():
    p = load_policy()
    assert p.decide("good", "good") is Decision.VALIDATED
    assert p.decide("excellent", "good") is Decision.SUGGESTION
    assert p.decide("fair", "good") is Decision.SUGGESTION
    assert p.decide("excellent", "fair") is Decision.JUSTIFICATION_REQUIRED
    assert p.gap("excellent", "broken") == 3
    with pytest.raises(ValueError, match="unknown grade 'mint'"):
        p.decide("mint", "good")


def test_low_confidence_is_inconclusive_whatever_the_gap():
    import dataclasses

    p = dataclasses.replace(load_policy(), min_confidence=0.55)
    assert p.decide("good", "good", 0.54) is Decision.INCONCLUSIVE
    assert p.decide("excellent", "fair", 0.2) is Decision.INCONCLUSIVE
    assert p.decide("good", "good", 0.55) is Decision.VALIDATED
    assert p.decide("excellent", "fair", 0.9) is Decision.JUSTIFICATION_REQUIRED
    assert p.decide("good", "good") is Decision.VALIDATED  # no confidence: from the gap
    never = dataclasses.replace(p, min_confidence=0.0)
    assert never.decide("good", "good", 0.0) is Decision.VALIDATED
    assert policy_from_dict(p.to_dict()) == p
    assert p.to_dict()["decision"]["min_confidence"] == 0.55


@pytest.mark.parametrize("value", [1, 1.5, -0.1, "0.5", True])
def test_min_confidence_must_be_in_0_1(value):
    data = load_policy().to_dict()
    data["decision"]["min_confidence"] = value
    with pytest.raises(ConfigError, match=r"decision\.min_confidence"):
        policy_from_dict(data)


def test_stored_decisions_are_the_policys():
    from serve.models import DECISIONS

    assert DECISIONS == ("validated", "suggestion", "justification_required", "inconclusive")
    assert all(type(d) is str for d in DECISIONS)  # plain strings for SQL CHECK constraints


def test_ctia_example_scale():
    p = load_policy("ctia")
    assert p.grades == ("A", "B", "C", "D", "E")
    assert p.grade("light_scratches", "flawless") == "B"
    assert p.grade("cracked", "flawless") == "D"
    assert p.grade("flawless", "flawless", failed_checks=["buttons"]) == "E"
    assert not p.sellable("D")


def test_policy_round_trips_through_dict():
    p = load_policy()
    assert policy_from_dict(p.to_dict()) == p


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d["policy"]["screen"].pop("cracked"), "policy.screen.cracked: missing"),
    (lambda d: d["policy"]["shell"].update(dented="fair"), "policy.shell: unknown key(s) dented"),
    (lambda d: d["policy"].update(failed_check="F"), "policy.failed_check: 'F' is not a grade"),
    (lambda d: d["decision"].update(validated_max_gap=2), "decision: need 0 <="),
    (lambda d: d["decision"].update(suggestion_max_gap="1"), "decision.suggestion_max_gap"),
    (lambda d: d["scale"].update(grades=["a"]), "scale.grades"),
    (lambda d: d.update(extra={}), "config: unknown key(s) extra"),
])
def test_bad_config_names_the_key(mutate, message):
    data = load_policy().to_dict()
    mutate(data)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        policy_from_dict(data)


def test_config_file_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[scale\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_policy(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_policy(tmp_path / "missing.toml")
    good = tmp_path / "mine.toml"
    good.write_text(_toml(load_policy("ctia").to_dict()))
    assert load_policy(good).grades == ("A", "B", "C", "D", "E")


def _toml(d: dict) -> str:
    lines = []

    def emit(prefix: str, table: dict) -> None:
        scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
        lines.append(f"[{prefix}]")
        lines.extend(f"{k} = {json.dumps(v)}" for k, v in scalars.items())
        for k, v in table.items():
            if isinstance(v, dict):
                emit(f"{prefix}.{k}", v)

    for k, v in d.items():
        emit(k, v)
    return "\n".join(lines) + "\n"


def test_parts_and_return_reasons_are_defined_once():
    from serve.settings import Settings
    from tabular.schema import RETURN_REASONS
    from training.synth.devices import RANDOM_RETURN_REASONS
    from vision.conditions import CONDITIONS, PART_VIEW, PARTS

    assert PARTS == ("screen", "shell") == tuple(CONDITIONS) == tuple(PART_VIEW)
    assert Settings().return_reasons == list(RETURN_REASONS)
    assert set(RANDOM_RETURN_REASONS) <= set(RETURN_REASONS)
