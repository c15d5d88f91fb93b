"""Use cases: lab results come in."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, date, datetime

from sqlalchemy import and_, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from fangkong_common import outbox
from fangkong_common.auth import Principal, Role
from fangkong_common.db import one_of
from fangkong_common.events.envelope import Envelope
from fangkong_common.events.schemas import TestNegative, TestPoolPositive, TestPositive
from testing import schemas
from testing.config import Settings
from testing.models import Lab, TestOrder, Tube, TubeMember
from testing.service.common import (
    SOURCE,
    BatchRejected,
    aware,
    chunk_size,
    chunks,
    err,
    insert_ignore,
    lock_for_writes,
    utc_now,
)


def order_row(key: str, region: str, reason: str, *, source_barcode: str | None = None, dedup: str,
               now: datetime, quarantine_order_id: str | None = None, stage_index: int | None = None,
               due_date: date | None = None) -> dict:
    return {"id": str(uuid.uuid4()), "person_key": key, "region_code": region, "reason": reason,
            "status": "pending", "source_barcode": source_barcode, "quarantine_order_id": quarantine_order_id,
            "stage_index": stage_index, "due_date": due_date, "fulfilled_barcode": None, "dedup_key": dedup,
            "created_at": now, "updated_at": now}


async def ingest_results(session: AsyncSession, principal: Principal, settings: Settings,
                         body: schemas.ResultsIn) -> schemas.ResultsOut:
    results = body.results
    if len(results) > settings.max_batch:
        raise BatchRejected([err(["results"], f"每批最多 {settings.max_batch} 条")])
    await lock_for_writes(session)
    errors: list[dict] = []
    lab_ids = sorted({r.lab_id for r in results})
    labs = {lab.id: lab for lab in await session.scalars(select(Lab).where(Lab.id.in_(lab_ids)))}
    for i, r in enumerate(results):
        lab = labs.get(r.lab_id)
        if lab is None:
            errors.append(err(["results", i, "lab_id"], f"检测机构 {r.lab_id} 不存在", "not_found"))
        elif principal.role is Role.lab:
            if r.lab_id not in principal.sites:
                errors.append(err(["results", i, "lab_id"], f"您只能提交本机构的结果，不能代 {r.lab_id} 提交",
                                   "forbidden"))
        elif not principal.can_see(lab.region_code):
            errors.append(err(["results", i, "lab_id"], f"检测机构 {r.lab_id} 不在您的权限范围内", "forbidden"))

    barcodes = list(dict.fromkeys(r.barcode for r in results))
    tubes: dict[str, Tube] = {}
    for part in chunks(barcodes, chunk_size(session)):
        statement = select(Tube).where(one_of(session, Tube.barcode, part))
        if session.get_bind().dialect.name == "postgresql":
            statement = statement.with_for_update()  # a concurrent same result waits, then sees it applied
        for tube in await session.scalars(statement):
            tubes[tube.barcode] = tube

    to_apply: dict[str, schemas.ResultIn] = {}
    unchanged = 0
    for i, r in enumerate(results):
        tube = tubes.get(r.barcode)
        if tube is None:
            errors.append(err(["results", i, "barcode"], f"条码 {r.barcode} 没有采样记录", "not_found"))
            continue
        earlier = to_apply.get(r.barcode)
        if earlier is not None:
            if earlier.result != r.result:
                errors.append(err(["results", i, "result"], f"条码 {r.barcode} 在本批中结果矛盾", "conflict"))
            else:
                unchanged += 1
            continue
        if tube.status == r.result:
            unchanged += 1  # the same result again: idempotent, nothing new
            continue
        if tube.status != "collected":
            errors.append(err(["results", i, "result"],
                               f"条码 {r.barcode} 已有结果 {tube.status}，不能改为 {r.result}", "conflict"))
            continue
        to_apply[r.barcode] = r
    if errors:
        raise BatchRejected(errors)
    if not to_apply:
        return schemas.ResultsOut(applied=0, unchanged=unchanged, retest_orders=0, reswab_orders=0, events=0)

    members: dict[str, list[str]] = defaultdict(list)
    for part in chunks(list(to_apply), chunk_size(session)):
        rows = await session.execute(select(TubeMember.barcode, TubeMember.person_key)
                                     .where(one_of(session, TubeMember.barcode, part)).order_by(TubeMember.person_key))
        for barcode, key in rows.all():
            members[barcode].append(key)

    now = utc_now()
    tube_updates, envelopes, orders, voided = [], [], [], []
    retests = reswabs = 0
    for barcode, r in to_apply.items():
        tube = tubes[barcode]
        keys = members[barcode]
        tested_at = r.tested_at.astimezone(UTC)
        collected_at = aware(tube.collected_at)
        tube_updates.append({"bc": barcode, "st": r.result, "lab": r.lab_id, "at": tested_at, "ct": r.ct_value})
        if r.result == "positive" and len(keys) >= 2:
            envelopes.append(Envelope.wrap(TestPoolPositive(
                barcode=barcode, lab_id=r.lab_id, region_code=tube.region_code, member_keys=keys,
                collected_at=collected_at, resulted_at=tested_at), source=SOURCE, key=barcode))
            # Every member of a positive pool is controlled and re-swabbed alone: exactly k orders.
            orders.extend(order_row(k, tube.region_code, "retest", source_barcode=barcode,
                                     dedup=f"retest:{barcode}:{k}", now=now) for k in keys)
            retests += len(keys)
        elif r.result == "positive":
            envelopes.append(Envelope.wrap(TestPositive(
                person_key=keys[0], barcode=barcode, lab_id=r.lab_id, region_code=tube.region_code,
                collected_at=collected_at, resulted_at=tested_at, ct_value=r.ct_value),
                source=SOURCE, key=keys[0]))
        elif r.result == "negative":
            envelopes.append(Envelope.wrap(TestNegative(
                barcode=barcode, lab_id=r.lab_id, region_code=tube.region_code, member_keys=keys,
                collected_at=collected_at, resulted_at=tested_at), source=SOURCE, key=barcode))
        else:
            # Invalid: the members are free to be swabbed again in the same round.
            voided.append({"bc": barcode})
            orders.extend(order_row(k, tube.region_code, "reswab", source_barcode=barcode,
                                     dedup=f"reswab:{barcode}:{k}", now=now) for k in keys)
            reswabs += len(keys)

    table = Tube.__table__
    await session.execute(
        update(table).where(and_(table.c.barcode == bindparam("bc"), table.c.status == "collected"))
        .values(status=bindparam("st"), lab_id=bindparam("lab"), resulted_at=bindparam("at"),
                ct_value=bindparam("ct")), tube_updates)
    if voided:
        mt = TubeMember.__table__
        await session.execute(update(mt).where(mt.c.barcode == bindparam("bc")).values(void=True), voided)
    if orders:
        for part in chunks(orders, 2000):
            await session.execute(insert_ignore(session, TestOrder), list(part))
    outbox.add(session, *envelopes)
    return schemas.ResultsOut(applied=len(to_apply), unchanged=unchanged, retest_orders=retests,
                              reswab_orders=reswabs, events=len(envelopes))

