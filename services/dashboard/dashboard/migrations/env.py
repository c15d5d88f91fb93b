from fangkong_common.migrations import run_env
from dashboard.models import Base

run_env(Base.metadata)
