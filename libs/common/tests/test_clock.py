"""The simulation clock: moved by an admin over HTTP, read by every "now", off in production."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from fangkong_common import clock
from fangkong_common.app import create_service_app
from fangkong_common.auth import Role
from fangkong_common.events.envelope import Envelope
from fangkong_common.settings import DEFAULT_SECRET, CommonSettings
from fangkong_common.testing import running


@pytest.fixture(autouse=True)
def _wall_clock_after() -> Iterator[None]:
    yield
    clock.set_offset(timedelta(0))


def _app(tmp_path: Path, **settings):
    return create_service_app(name="svc", settings=CommonSettings(service_name="svc", data_dir=tmp_path,
                                                                  bus_url="memory://clock", **settings))


def test_moving_the_clock_moves_now_today_and_new_events() -> None:
    moment = datetime(2022, 3, 14, 23, 30, tzinfo=UTC)  # 07:30 on the 15th in Beijing
    clock.move_to(moment)
    assert abs(clock.now() - moment) < timedelta(seconds=5)
    assert clock.today().isoformat() == "2022-03-15"
    event = Envelope(type="x", source="s", key="k", payload={})
    assert abs(event.occurred_at - moment) < timedelta(seconds=5)
    with pytest.raises(ValueError, match="aware"):
        clock.move_to(datetime(2022, 3, 14))


async def test_an_admin_moves_the_clock_and_anyone_signed_in_reads_it(tmp_path: Path) -> None:
    async with running(_app(tmp_path)) as h:
        assert (await h.client.get("/svc/clock")).status_code == 401
        body = {"now": "2022-03-15T08:00:00+08:00"}
        refused = await h.client.put("/svc/clock", json=body, headers=h.headers(Role.commander, regions=["440300"]))
        assert refused.status_code == 403
        moved = await h.client.put("/svc/clock", json=body, headers=h.headers(Role.admin))
        assert moved.status_code == 200, moved.text
        read = (await h.client.get("/svc/clock", headers=h.headers(Role.viewer, regions=["440300"]))).json()
        assert read["controllable"] is True
        assert read["now"].startswith("2022-03-15T00:0")  # UTC
        assert read["offset_seconds"] < -365 * 86400
        back = await h.client.put("/svc/clock", json={"offset_seconds": 0}, headers=h.headers(Role.admin))
        assert abs(back.json()["offset_seconds"]) < 1e-6
        assert abs(clock.now() - datetime.now(UTC)) < timedelta(seconds=1)


@pytest.mark.parametrize("body", [{}, {"now": "2022-03-15T08:00:00", "offset_seconds": 1},
                                  {"now": "2022-03-15T08:00:00"}])
async def test_a_bad_clock_request_is_a_422_and_moves_nothing(tmp_path: Path, body: dict) -> None:
    async with running(_app(tmp_path)) as h:
        response = await h.client.put("/svc/clock", json=body, headers=h.headers(Role.admin))
        assert response.status_code == 422
        assert clock.offset() == timedelta(0)


async def test_clock_control_turned_off_refuses_to_move(tmp_path: Path) -> None:
    async with running(_app(tmp_path, clock_control=False)) as h:
        response = await h.client.put("/svc/clock", json={"offset_seconds": 3600}, headers=h.headers(Role.admin))
        assert response.status_code == 409
        assert clock.offset() == timedelta(0)
        assert (await h.client.get("/svc/clock", headers=h.headers(Role.admin))).json()["controllable"] is False


def test_production_has_no_clock_control_and_refuses_to_turn_it_on() -> None:
    secrets = {"jwt_secret": "j" * 48, "person_key_secret": "p" * 48}
    assert CommonSettings(env="production", **secrets).clock_controllable is False
    assert CommonSettings(env="development").clock_controllable is True
    with pytest.raises(ValidationError, match="CLOCK_CONTROL"):
        CommonSettings(env="production", clock_control=True, **secrets)
    assert DEFAULT_SECRET not in secrets.values()


async def test_a_frozen_clock_stays_put_until_it_is_moved_again(tmp_path: Path) -> None:
    async with running(_app(tmp_path)) as h:
        body = {"now": "2022-03-15T08:00:00+08:00", "frozen": True}
        moved = (await h.client.put("/svc/clock", json=body, headers=h.headers(Role.admin))).json()
        assert moved["frozen"] is True
        first = clock.now()
        await asyncio.sleep(0.02)
        assert clock.now() == first == datetime(2022, 3, 15, 0, 0, tzinfo=UTC)
        assert Envelope(type="x", source="s", key="k", payload={}).occurred_at == first
        bad = await h.client.put("/svc/clock", json={"offset_seconds": 0, "frozen": True}, headers=h.headers(Role.admin))
        assert bad.status_code == 422
        running_again = (await h.client.put("/svc/clock", json={"offset_seconds": 0},
                                            headers=h.headers(Role.admin))).json()
        assert running_again["frozen"] is False
        assert abs(clock.now() - datetime.now(UTC)) < timedelta(seconds=1)
