from pathlib import Path

from fangkong_common.settings import CommonSettings


class Settings(CommonSettings):
    service_name: str = "dashboard"
    # Daily reports (日报/零报告) are due by this hour, Beijing time, on the day they cover.
    report_cutoff_hour: int = 20
    # /dashboard/login hands out short tokens for the demo screen; never with FANGKONG_ENV=production.
    dev_login: bool = True
    # Lifetime of a demo-login token.
    dev_login_ttl_seconds: int = 3600
    # TrueType CJK font for the PDF report (reportlab embeds TrueType outlines only, not CFF/OTF):
    # Debian's fonts-wqy-microhei by default; the first existing path wins.
    cjk_font_paths: list[Path] = [
        Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
        Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"),
        Path("/usr/share/fonts/truetype/arphic/uming.ttc"),
    ]
    # How often the sender looks for webhook deliveries due.
    webhook_poll_seconds: float = 0.5
    # Attempts per delivery before it is marked failed.
    webhook_max_attempts: int = 8
    # First retry delay; doubles with each attempt.
    webhook_backoff_seconds: float = 2.0
    # Time a subscriber has to answer one delivery.
    webhook_timeout_seconds: float = 10.0
    # How often the live feed (/dashboard/stream) looks for new changes.
    stream_poll_seconds: float = 1.0
    # A comment line sent this often keeps idle live-feed connections open through proxies.
    stream_heartbeat_seconds: float = 15.0
    # Live-feed rows older than this are purged (a reconnecting screen reloads the numbers anyway).
    change_retention_hours: int = 24
    # Person facts (swabbed/ordered/admitted on a day) match events of other topics arriving out of
    # order; older ones are purged (10-in-1 mass testing of 10M people writes 10M facts a day).
    fact_retention_days: int = 14
