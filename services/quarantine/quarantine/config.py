from fangkong_common.settings import CommonSettings


class Settings(CommonSettings):
    service_name: str = "quarantine"
    # The daily job (stage moves, tests due, releases, missed check-ins) is safe to
    # run any number of times a day; this is how often it wakes. 0 turns it off.
    scheduler_interval_seconds: float = 600.0
    # Health check-ins (temperature, symptoms) expected per person per day; fewer raise a missed check-in alert.
    checkins_per_day: int = 2
    # A site whose free share of beds falls below this emits site.capacity_low.
    capacity_low_share: float = 0.10
