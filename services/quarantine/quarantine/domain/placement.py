"""Placement: which site takes a person (capacity, kind, home city first, then 跨市支援)."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from fangkong_common.auth import region_prefix

# Site kinds that may take a person in a stage at a place, in order of preference.
# Contacts and returnees go to single hotel rooms; positives to a designated
# hospital, or a 方舱 when the hospitals are full.
KINDS_FOR_PLACE: dict[str, tuple[str, ...]] = {
    "port": ("port",),
    "municipal_site": ("hotel",),
    "designated_hospital": ("hospital", "fangcang"),
}
POSITIVE_KINDS: tuple[str, ...] = ("hospital", "fangcang")
LOW_CAPACITY_SHARE = 0.10


def city_of(region_code: str) -> str:
    """The city part of a GB/T 2260 code (440305 -> 4403)."""
    return region_code[:4]


@dataclass
class SiteSlot:
    site_id: str
    kind: str
    region_code: str
    capacity: int
    occupancy: int
    supporting_regions: tuple[str, ...] = ()

    @property
    def free(self) -> int:
        return max(0, self.capacity - self.occupancy)

    def supports(self, region_code: str) -> bool:
        return any(region_code.startswith(region_prefix(code)) for code in self.supporting_regions)


def tier(site: SiteSlot, person_region: str) -> int | None:
    """0: a site in the person's home city; 1: a site configured to support it; None: neither."""
    if city_of(site.region_code) == city_of(person_region):
        return 0
    if site.supports(person_region):
        return 1
    return None


def candidates(sites: Iterable[SiteSlot], person_region: str, kinds: Sequence[str]) -> list[SiteSlot]:
    """Sites that may take the person, best first: home city before supporting cities,
    then the preferred kind, then the most free places (spreads load within a tier)."""
    ranked = []
    for site in sites:
        if site.kind not in kinds:
            continue
        t = tier(site, person_region)
        if t is None:
            continue
        ranked.append(((t, kinds.index(site.kind), -site.free, site.site_id), site))
    ranked.sort(key=lambda pair: pair[0])
    return [site for _, site in ranked]


def choose(sites: Iterable[SiteSlot], person_region: str, kinds: Sequence[str]) -> SiteSlot | None:
    for site in candidates(sites, person_region, kinds):
        if site.free > 0:
            return site
    return None


def is_low(capacity: int, occupancy: int, share: float = LOW_CAPACITY_SHARE) -> bool:
    """Under ``share`` of the places free (a site of capacity 0 counts as low)."""
    return capacity <= 0 or (capacity - occupancy) < share * capacity


def place_many(sites: Sequence[SiteSlot], people: Sequence[tuple[str, Sequence[str]]]) -> list[SiteSlot | None]:
    """Place people (region code, site kinds) one after another, updating occupancy in place.

    Same choice as ``choose`` for each person in turn, without re-sorting every site per
    person: per (city, kinds) the candidate sites are grouped by rank (tier, kind) once, and
    each group is a heap on free places. Occupancy only grows here, so an entry whose free
    count is stale is pushed back with the right count when it surfaces.
    """
    by_city: dict[tuple[str, str], list[SiteSlot]] = {}
    supporters: list[SiteSlot] = []
    for site in sites:
        by_city.setdefault((site.kind, city_of(site.region_code)), []).append(site)
        if site.supporting_regions:
            supporters.append(site)
    by_id = {site.site_id: site for site in sites}
    groups: dict[tuple[str, tuple[str, ...]], list[list[tuple[int, str]]]] = {}
    chosen: list[SiteSlot | None] = []
    for region, kinds in people:
        key = (city_of(region), tuple(kinds))
        heaps = groups.get(key)
        if heaps is None:
            ranked: dict[tuple[int, int], list[tuple[int, str]]] = {}
            pool = [s for k in kinds for s in by_city.get((k, key[0]), [])]
            pool += [s for s in supporters if s.kind in kinds and tier(s, region) == 1]
            for site in pool:
                ranked.setdefault((tier(site, region), kinds.index(site.kind)), []).append((-site.free, site.site_id))
            heaps = groups[key] = [heapq.heapify(h) or h for _, h in sorted(ranked.items())]
        picked = None
        for heap in heaps:
            while heap:
                negative_free, site_id = heap[0]
                site = by_id[site_id]
                if site.free == 0:
                    heapq.heappop(heap)
                elif -negative_free != site.free:
                    heapq.heapreplace(heap, (-site.free, site_id))
                else:
                    picked = site
                    break
            if picked is not None:
                break
        if picked is not None:
            picked.occupancy += 1
            if picked.free:
                heapq.heapreplace(heaps_top(heaps, picked.site_id), (-picked.free, picked.site_id))
        chosen.append(picked)
    return chosen


def heaps_top(heaps: list[list[tuple[int, str]]], site_id: str) -> list[tuple[int, str]]:
    """The heap whose top is ``site_id`` (the one just chosen from)."""
    return next(h for h in heaps if h and h[0][1] == site_id)
