import sys
from pathlib import Path

# --import-mode=importlib puts no test folder on sys.path: make the shared event builders importable.
sys.path.insert(0, str(Path(__file__).parent))
