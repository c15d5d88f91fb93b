"""Use cases of the registry: the only place that writes its tables and its outbox.

Each function runs inside the caller's session (one per request or per consumed
batch) and never commits: the request or the consumer commits once, so the
state change and its events are one transaction. One module per part of the
registry; ``Registry`` is all of them together.
"""

from __future__ import annotations

from registry.service.base import TRACERS_ACROSS_REGIONS, person_scope, require_person_scope
from registry.service.checkpoints import Checkpoints
from registry.service.contacts import Contacts, case_classified, case_positive, contact_out
from registry.service.gatherings import Gatherings
from registry.service.people import People
from registry.service.travel import Travel
from registry.service.vaccinations import Vaccinations


class Registry(People, Travel, Checkpoints, Contacts, Vaccinations, Gatherings):
    """The registry's use cases, built with its settings: ``Registry(settings)``."""


__all__ = ["Registry", "TRACERS_ACROSS_REGIONS", "case_classified", "case_positive", "contact_out", "person_scope",
           "require_person_scope"]
