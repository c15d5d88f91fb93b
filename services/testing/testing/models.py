"""Tables of the testing service. The outbox and inbox tables come from fangkong_common."""

from sqlalchemy.orm import DeclarativeBase

from fangkong_common.db import naming_metadata


class Base(DeclarativeBase):
    metadata = naming_metadata()
