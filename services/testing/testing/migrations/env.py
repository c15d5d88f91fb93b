from fangkong_common.migrations import run_env
from testing.models import Base

run_env(Base.metadata)
