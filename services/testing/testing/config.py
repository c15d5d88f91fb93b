from fangkong_common.settings import CommonSettings


class Settings(CommonSettings):
    service_name: str = "testing"
    # Travel between a site and a lab when no measured time is given: great-circle at this speed.
    travel_speed_kmh: float = 30.0
    # Added to every site-to-lab trip (loading, hand-over at the lab).
    travel_handling_minutes: float = 15.0
    # The capacity plan sends a site's tubes to at most this many nearest labs (plus any with a measured travel time).
    plan_nearest_labs: int = 8
    # Length of a time slot of the capacity plan.
    plan_slot_minutes: int = 30
    # Opening hours of sites and labs are local time (China Standard Time).
    local_utc_offset_hours: float = 8.0
    # Pool ratio (1, 5, 10 or 20 in 1) a site collects with unless it says otherwise.
    default_pool_ratio: int = 10
    # Alerts of the forecast.
    alert_backlog_tubes: int = 10_000
    # Alert when the forecast share of tubes resulted within 24 h falls below this.
    alert_share_24h: float = 0.9
    # Alert when a lab's reagent lasts fewer days than this at the forecast rate.
    alert_reagent_days: float = 3.0
    # Days of results the prevalence estimate (and the advised pool ratio) is worked out from.
    positivity_window_days: int = 7
    # Most tubes or results one POST may carry.
    max_batch: int = 5_000
    # The forecast also runs on its own (alerts without anyone asking); 0 turns it off.
    forecast_interval_seconds: float = 900.0
    # Days ahead the background forecast looks.
    forecast_days: int = 3
