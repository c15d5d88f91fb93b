from fangkong_common.settings import CommonSettings

from registry.domain.rules import BORDER_PROVINCES


class Settings(CommonSettings):
    service_name: str = "registry"
    # 密接 = 1, 次密接 = 2; a policy may ask for deeper tracing (up to 5).
    max_contact_degree: int = 2
    border_provinces: list[str] = sorted(BORDER_PROVINCES)
    import_max_rows: int = 500_000
    import_max_bytes: int = 200 * 1024 * 1024
