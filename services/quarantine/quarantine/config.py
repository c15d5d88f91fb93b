from fangkong_common.settings import CommonSettings


class Settings(CommonSettings):
    service_name: str = "quarantine"
    # The daily job (stage moves, tests due, releases, missed check-ins) is safe to
    # run any number of times a day; this is how often it wakes. 0 turns it off.
    scheduler_interval_seconds: float = 600.0
    checkins_per_day: int = 2
    capacity_low_share: float = 0.10
