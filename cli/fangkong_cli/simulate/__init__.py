"""``fangkong simulate``: outbreaks played through the public HTTP APIs.

``play`` is the importable entry (``fangkong up --demo``, end-to-end tests, what-if runs).
"""

from fangkong_cli.simulate.client import SimulationError, Target
from fangkong_cli.simulate.runner import SCENARIOS, Options, Summary, play

__all__ = ["SCENARIOS", "Options", "SimulationError", "Summary", "Target", "play"]
