from fangkong_common.settings import CommonSettings


class Settings(CommonSettings):
    service_name: str = "testing"
    # Travel between a site and a lab when no measured time is given: great-circle at this speed.
    travel_speed_kmh: float = 30.0
    travel_handling_minutes: float = 15.0
    plan_nearest_labs: int = 8
    plan_slot_minutes: int = 30
    # Opening hours of sites and labs are local time (China Standard Time).
    local_utc_offset_hours: float = 8.0
    default_pool_ratio: int = 10
    # Alerts of the forecast.
    alert_backlog_tubes: int = 10_000
    alert_share_24h: float = 0.9
    alert_reagent_days: float = 3.0
    positivity_window_days: int = 7
    max_batch: int = 5_000
    # The forecast also runs on its own (alerts without anyone asking); 0 turns it off.
    forecast_interval_seconds: float = 900.0
    forecast_days: int = 3
