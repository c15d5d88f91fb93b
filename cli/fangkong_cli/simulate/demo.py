"""`fangkong up --demo`: a small seeded school outbreak, played through the platform's own
HTTP API like any other client, so the screen is alive at first sight."""

from __future__ import annotations

from fangkong_cli.simulate.client import Target
from fangkong_cli.simulate.runner import Summary, play

SCENARIO = "school-outbreak"
SEED = 2022
# About a hundred positives, a few thousand contacts and tubes: loaded in well under a minute.
SCALE = 0.05


async def load(url: str, token: str) -> Summary:
    return await play(SCENARIO, Target(token=token, url=url), seed=SEED, scale=SCALE, progress=False)
