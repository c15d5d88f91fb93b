"""Checkpoints and their passes (卡点): fevers, minimal registration of unknown people."""

from __future__ import annotations

import uuid

from fastapi import HTTPException, status
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from fangkong_common.auth import Principal
from fangkong_common.db import dialect_insert
from fangkong_common.errors import Invalid, NotFound
from fangkong_common.events.schemas import CheckpointFever
from fangkong_common.identity import normalise_id_number

from registry import schemas
from registry.domain import rules
from registry.domain.idcard import IdNumberError, parse_resident_id
from registry.models import Checkpoint, CheckpointPass, Person
from registry.service.base import RegistryBase, as_aware, emit, utcnow


class Checkpoints(RegistryBase):
    async def add_checkpoint(self, session: AsyncSession, principal: Principal, data: schemas.CheckpointIn) -> Checkpoint:
        if not principal.can_see(data.region_code):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"region {data.region_code} is outside your scope")
        checkpoint = Checkpoint(id=str(uuid.uuid4()), name=data.name, region_code=data.region_code, kind=data.kind)
        session.add(checkpoint)
        await session.flush()
        return checkpoint

    async def record_passes(self, session: AsyncSession, principal: Principal, checkpoint_id: str,
                            batch: schemas.PassesIn) -> schemas.PassesOut:
        checkpoint = await session.get(Checkpoint, checkpoint_id)
        if checkpoint is None or not principal.can_see(checkpoint.region_code):
            raise NotFound(f"checkpoint {checkpoint_id} not found")
        errors: list[dict] = []
        keyed: list[tuple[schemas.PassIn, str]] = []
        new_people: dict[str, dict] = {}
        now = utcnow()
        for index, item in enumerate(batch.passes):
            if item.person_id is not None:
                keyed.append((item, item.person_id))
                continue
            number = normalise_id_number(item.id_number or "")
            if item.id_type == "resident_id":
                try:
                    parsed = parse_resident_id(number)
                except IdNumberError as exc:
                    errors.append({"loc": ["body", "passes", index, "id_number"], "msg": str(exc),
                                   "type": f"id_number.{exc.part}"})
                    continue
                birth, sex = parsed.birth_date, parsed.sex
            else:
                birth, sex = None, None
            key = self.key_of(item.id_type, number)
            keyed.append((item, key))
            new_people.setdefault(key, dict(person_key=key, id_type=item.id_type, id_number=number, name=item.name,
                                            region_code=checkpoint.region_code, birth_date=birth, sex=sex,
                                            registered_via="checkpoint", created_at=now, updated_at=now))
        if errors:
            raise Invalid(errors[0]["loc"], errors[0]["msg"], type=errors[0]["type"], more=errors[1:])
        registered = 0
        if new_people:
            known = set((await session.scalars(select(Person.person_key)
                                               .where(Person.person_key.in_(list(new_people))))).all())
            fresh = [p for k, p in new_people.items() if k not in known]
            if fresh:  # an unknown person passing gets a minimal registration
                await session.execute(insert(Person), fresh)
            registered = len(fresh)
        accepted = fevers = 0
        rows = [{"checkpoint_id": checkpoint.id, "person_key": key, "temperature_c": item.temperature_c,
                 "passed_at": item.passed_at, "fever": rules.is_fever(item.temperature_c),
                 "client_pass_id": item.pass_id} for item, key in keyed]
        # One cached statement run as executemany ("insertmanyvalues" batches it), not a fresh
        # multi-row VALUES statement compiled for every batch.
        statement = (dialect_insert(session, CheckpointPass).on_conflict_do_nothing(index_elements=["client_pass_id"])
                     .returning(CheckpointPass.person_key, CheckpointPass.temperature_c, CheckpointPass.passed_at,
                                CheckpointPass.fever))
        for start in range(0, len(rows), 1000):
            stored = (await session.execute(statement, rows[start:start + 1000])).all()
            accepted += len(stored)
            for key, temperature, passed_at, fever in stored:
                if fever:
                    fevers += 1
                    emit(session, CheckpointFever(checkpoint_id=checkpoint.id, region_code=checkpoint.region_code,
                                                   person_key=key, temperature_c=temperature,
                                                   observed_at=as_aware(passed_at)), key or checkpoint.id)
        return schemas.PassesOut(accepted=accepted, duplicates=len(rows) - accepted, fevers=fevers,
                                 registered=registered)


