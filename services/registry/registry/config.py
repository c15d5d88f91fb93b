from fangkong_common.settings import CommonSettings

from registry.domain.rules import BORDER_PROVINCES


class Settings(CommonSettings):
    service_name: str = "registry"
    # 密接 = 1, 次密接 = 2; a policy may ask for deeper tracing (up to 5).
    max_contact_degree: int = 2
    # Province codes (2 digits) of the land-border provinces whose returnees count as domestic_key_region.
    border_provinces: list[str] = sorted(BORDER_PROVINCES)
    # A bulk import (XLSX/CSV) with more rows than this is refused before anything is written.
    import_max_rows: int = 500_000
    # A bulk import file larger than this is refused (422 naming the file).
    import_max_bytes: int = 200 * 1024 * 1024
    # An XLSX whose parts unpack to more than this (or over 100:1) is refused unread (a zip bomb).
    import_max_unpacked_bytes: int = 1024 * 1024 * 1024
