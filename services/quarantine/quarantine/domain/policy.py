"""Control policies as data: a versioned document mapping person categories to stages.

A policy document (YAML in ``quarantine/policies/``, or JSON posted to the API)
is parsed into frozen dataclasses here; nothing in this module does IO except
``load_packaged`` reading the files shipped with the package.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from importlib import resources
from typing import Any

import yaml

STAGE_KINDS = ("centralized", "home", "monitoring", "hospital")
STAGE_PLACES = ("port", "municipal_site", "home", "designated_hospital")
COUNT_FROM = ("arrival", "exposure", "order")

# Categories a policy may map. Returnee categories come from person.returned
# (ReturneeCategory), contacts from contact.identified (by degree), risk flags
# from person.risk_flagged (a policy may split them by level).
CATEGORY_HINT = (
    "inbound_international, inbound_port_completed_elsewhere, domestic_key_region, domestic_other, local, "
    "contact_degree_N, risk_flagged, risk_flagged_medium, risk_flagged_high"
)


class PolicyError(ValueError):
    """A policy document that does not parse; ``errors`` are (field path, reason) pairs."""

    def __init__(self, errors: Sequence[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{loc}: {msg}" for loc, msg in errors))
        self.errors = list(errors)


@dataclass(frozen=True)
class StageRule:
    kind: str
    place: str
    days: int
    test_days: tuple[int, ...] = ()
    """1-based day numbers within the stage's full length (day 1 = its first day)."""
    credit_served: bool = False
    """Days already served elsewhere (person.returned served_quarantine_days) count against this stage."""


@dataclass(frozen=True)
class CategoryRule:
    category: str
    stages: tuple[StageRule, ...]
    count_from: str = "order"
    """Day 1 is the arrival date, the day after the last exposure, or the day the order opens."""
    entry_test: bool = False
    """One test on the first day under our control when the plan starts part-way (credit or late order)."""
    note: str = ""


@dataclass(frozen=True)
class Policy:
    policy_id: str
    version: int
    effective_from: date
    title: str
    basis: str
    categories: Mapping[str, CategoryRule] = field(default_factory=dict)

    def rule_for(self, category: str) -> CategoryRule | None:
        rule = self.categories.get(category)
        if rule is None and category.startswith("risk_flagged_"):
            rule = self.categories.get("risk_flagged")  # one rule for every level unless split
        return rule


def _category_ok(name: str) -> bool:
    if name in ("inbound_international", "inbound_port_completed_elsewhere", "domestic_key_region",
                "domestic_other", "local", "risk_flagged", "risk_flagged_medium", "risk_flagged_high"):
        return True
    if name.startswith("contact_degree_"):
        return name.removeprefix("contact_degree_").isdigit()
    return False


def parse_policy(document: Mapping[str, Any]) -> Policy:
    """The policy in ``document``, or PolicyError listing every problem with its path."""
    errors: list[tuple[str, str]] = []
    if not isinstance(document, Mapping):
        raise PolicyError([("$", "policy must be a mapping")])

    def need(key: str, kind: type | tuple[type, ...], where: Mapping[str, Any], path: str) -> Any:
        value = where.get(key)
        if value is None:
            errors.append((f"{path}{key}", "required"))
        elif not isinstance(value, kind) or isinstance(value, bool) and kind is int:
            errors.append((f"{path}{key}", f"must be {getattr(kind, '__name__', kind)}"))
            return None
        return value

    policy_id = need("policy_id", str, document, "")
    version = need("version", int, document, "")
    if isinstance(version, int) and version < 1:
        errors.append(("version", "must be >= 1"))
    effective = document.get("effective_from")
    if isinstance(effective, str):
        try:
            effective = date.fromisoformat(effective)
        except ValueError:
            errors.append(("effective_from", "must be a date YYYY-MM-DD"))
            effective = None
    elif effective is None:
        errors.append(("effective_from", "required"))
    elif not isinstance(effective, date):
        errors.append(("effective_from", "must be a date YYYY-MM-DD"))
        effective = None
    title = document.get("title") or ""
    basis = document.get("basis") or ""
    raw_categories = document.get("categories")
    categories: dict[str, CategoryRule] = {}
    if not isinstance(raw_categories, Mapping) or not raw_categories:
        errors.append(("categories", "must be a non-empty mapping of category to rule"))
        raw_categories = {}
    for name, raw in raw_categories.items():
        path = f"categories.{name}."
        if not _category_ok(str(name)):
            errors.append((f"categories.{name}", f"unknown category; one of {CATEGORY_HINT}"))
            continue
        if not isinstance(raw, Mapping):
            errors.append((f"categories.{name}", "must be a mapping"))
            continue
        count_from = raw.get("count_from", "order")
        if count_from not in COUNT_FROM:
            errors.append((f"{path}count_from", f"must be one of {', '.join(COUNT_FROM)}"))
        raw_stages = raw.get("stages", [])
        if not isinstance(raw_stages, list):
            errors.append((f"{path}stages", "must be a list"))
            raw_stages = []
        stages: list[StageRule] = []
        for i, st in enumerate(raw_stages):
            spath = f"{path}stages.{i}."
            if not isinstance(st, Mapping):
                errors.append((f"{path}stages.{i}", "must be a mapping"))
                continue
            kind, place = st.get("kind"), st.get("place")
            if kind not in STAGE_KINDS:
                errors.append((f"{spath}kind", f"must be one of {', '.join(STAGE_KINDS)}"))
            if place not in STAGE_PLACES:
                errors.append((f"{spath}place", f"must be one of {', '.join(STAGE_PLACES)}"))
            days = st.get("days")
            if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 366:
                errors.append((f"{spath}days", "must be an integer from 1 to 366"))
                days = None
            test_days = st.get("test_days", []) or []
            if not isinstance(test_days, list) or not all(isinstance(d, int) and not isinstance(d, bool)
                                                          for d in test_days):
                errors.append((f"{spath}test_days", "must be a list of day numbers"))
                test_days = []
            elif days is not None and any(not 1 <= d <= days for d in test_days):
                errors.append((f"{spath}test_days", f"day numbers must be within 1..{days} (1-based)"))
            credit = st.get("credit_served", False)
            if not isinstance(credit, bool):
                errors.append((f"{spath}credit_served", "must be true or false"))
            if days is not None and kind in STAGE_KINDS and place in STAGE_PLACES:
                stages.append(StageRule(kind=kind, place=place, days=days,
                                        test_days=tuple(sorted(set(test_days))), credit_served=bool(credit)))
        categories[str(name)] = CategoryRule(category=str(name), stages=tuple(stages),
                                             count_from=count_from if count_from in COUNT_FROM else "order",
                                             entry_test=bool(raw.get("entry_test", False)),
                                             note=str(raw.get("note", "")))
    if errors:
        raise PolicyError(errors)
    return Policy(policy_id=policy_id, version=version, effective_from=effective, title=str(title),
                  basis=str(basis), categories=categories)


def policy_document(policy: Policy) -> dict[str, Any]:
    """The JSON-able document of ``policy`` (what parse_policy reads back)."""
    return {
        "policy_id": policy.policy_id,
        "version": policy.version,
        "effective_from": policy.effective_from.isoformat(),
        "title": policy.title,
        "basis": policy.basis,
        "categories": {
            name: {
                "count_from": rule.count_from,
                "entry_test": rule.entry_test,
                "note": rule.note,
                "stages": [
                    {"kind": s.kind, "place": s.place, "days": s.days, "test_days": list(s.test_days),
                     "credit_served": s.credit_served}
                    for s in rule.stages
                ],
            }
            for name, rule in policy.categories.items()
        },
    }


def parse_yaml(text: str) -> Policy:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError([("$", f"not valid YAML: {exc}")]) from exc
    return parse_policy(document)


def load_packaged() -> list[Policy]:
    """Every policy file shipped in ``quarantine/policies`` (sorted by id and version)."""
    folder = resources.files("quarantine") / "policies"
    policies = [parse_yaml(entry.read_text(encoding="utf-8"))
                for entry in folder.iterdir() if entry.name.endswith((".yaml", ".yml"))]
    return sorted(policies, key=lambda p: (p.policy_id, p.version))


class PolicyBook:
    """All versions of all policies; picks the one in force on a date."""

    def __init__(self, policies: Sequence[Policy]) -> None:
        self.policies = sorted(policies, key=lambda p: (p.effective_from, p.version))

    def in_force(self, on: date, policy_id: str | None = None) -> Policy | None:
        """The latest version effective on ``on`` (highest effective date, then version)."""
        chosen = None
        for policy in self.policies:
            if policy.effective_from <= on and (policy_id is None or policy.policy_id == policy_id):
                chosen = policy
        return chosen

    def get(self, policy_id: str, version: int) -> Policy | None:
        for policy in self.policies:
            if policy.policy_id == policy_id and policy.version == version:
                return policy
        return None
