from fangkong_common.migrations import run_env
from quarantine.models import Base

run_env(Base.metadata)
