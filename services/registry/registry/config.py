from fangkong_common.settings import CommonSettings


class Settings(CommonSettings):
    service_name: str = "registry"
