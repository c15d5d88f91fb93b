"""`fangkong up --demo`: a small seeded school outbreak, played through the platform's own
HTTP API like any other client, so the screen is alive at first sight."""

from __future__ import annotations

from datetime import datetime, timedelta

from fangkong_common.clock import CHINA_TZ

from fangkong_cli.simulate.client import Target
from fangkong_cli.simulate.runner import Summary, play
from fangkong_cli.simulate.scenarios import CAMPUS_CURVE

SCENARIO = "school-outbreak"
SEED = 2022
# About a hundred positives, a few thousand contacts and tubes: loaded in well under a minute.
SCALE = 0.05


async def load(url: str, token: str) -> Summary:
    # The outbreak's last day is today, played up to the present: today's figures on the screen
    # (the morning's swabs, the night's results still to come) are those of a command center at this hour.
    now = datetime.now(CHINA_TZ)
    first_day = now.date() - timedelta(days=len(CAMPUS_CURVE) - 1)
    return await play(SCENARIO, Target(token=token, url=url), seed=SEED, scale=SCALE, progress=False,
                      start=first_day, until=now)
