"""Vaccinations and progress against targets by age group."""

from __future__ import annotations

from datetime import date

from fastapi import HTTPException, status
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from fangkong_common.auth import Principal, within_region
from fangkong_common.errors import Invalid
from fangkong_common.events.schemas import VaccinationRecorded

from registry import schemas
from registry.domain import rules
from registry.models import Vaccination, VaccinationTarget
from registry.service.base import RegistryBase, emit


class Vaccinations(RegistryBase):
    async def add_vaccination(self, session: AsyncSession, principal: Principal,
                              data: schemas.VaccinationIn) -> tuple[Vaccination, bool]:
        person = await self.get_visible(session, principal, data.person_id)
        if person.birth_date is None:
            raise Invalid(("body", "person_id"), "该人员无出生日期，无法确定年龄组 (no birth date on record: age group unknown)")
        if data.vaccinated_on < person.birth_date:
            raise Invalid(("body", "vaccinated_on"), "接种日期早于出生日期 (vaccinated before birth)")
        existing = await session.scalar(select(Vaccination).where(Vaccination.person_key == person.person_key,
                                                                  Vaccination.dose_number == data.dose_number))
        if existing is not None:
            return existing, False
        group = rules.vaccination_age_group(person.birth_date, data.vaccinated_on)
        dose = Vaccination(person_key=person.person_key, region_code=person.region_code, age_group=group,
                           vaccine=data.vaccine, dose_number=data.dose_number, vaccinated_on=data.vaccinated_on)
        session.add(dose)
        await session.flush()
        emit(session, VaccinationRecorded(person_key=person.person_key, region_code=person.region_code,
                                           age_group=group, vaccine=data.vaccine, dose_number=data.dose_number,
                                           vaccinated_on=data.vaccinated_on), person.person_key)
        return dose, True

    async def set_target(self, session: AsyncSession, principal: Principal,
                         data: schemas.VaccinationTargetIn) -> VaccinationTarget:
        if not principal.can_see(data.region_code):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"region {data.region_code} is outside your scope")
        target = await session.get(VaccinationTarget, (data.region_code, data.age_group))
        if target is None:
            target = VaccinationTarget(region_code=data.region_code, age_group=data.age_group)
            session.add(target)
        target.target_people, target.deadline = data.target_people, data.deadline
        await session.flush()
        return target

    async def vaccination_progress(self, session: AsyncSession, principal: Principal,
                                   region_code: str, today: date) -> schemas.VaccinationProgress:
        if not principal.can_see(region_code):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"region {region_code} is outside your scope")
        doses = (await session.execute(
            select(Vaccination.age_group, func.count(func.distinct(Vaccination.person_key)).filter(
                Vaccination.dose_number == 1), func.count(func.distinct(Vaccination.person_key)).filter(
                Vaccination.dose_number >= 2))
            .where(within_region(Vaccination.region_code, region_code)).group_by(Vaccination.age_group))).all()
        counts = {group: (first, full) for group, first, full in doses}
        targets = (await session.execute(
            select(VaccinationTarget.age_group, VaccinationTarget.region_code, VaccinationTarget.target_people,
                   VaccinationTarget.deadline).where(within_region(VaccinationTarget.region_code, region_code)))).all()
        groups = []
        for group in ("12-14", "15-17", "18+"):
            own = [t for t in targets if t.age_group == group and t.region_code == region_code]
            chosen = own or [t for t in targets if t.age_group == group]  # else the sum of the areas below
            target = sum(t.target_people for t in chosen) if chosen else None
            deadline = min(t.deadline for t in chosen) if chosen else None
            first, full = counts.get(group, (0, 0))
            ratio = round(full / target, 4) if target else None
            days_left = (deadline - today).days if deadline else None
            on_track = None
            if target:
                on_track = True if full >= target else (False if days_left is not None and days_left < 0 else None)
            groups.append(schemas.AgeGroupProgress(age_group=group, target_people=target, deadline=deadline,
                                                   first_dose=first, full_course=full, ratio=ratio,
                                                   days_left=days_left, on_track=on_track))
        return schemas.VaccinationProgress(region_code=region_code, as_of=today, groups=groups)


