"""Secrets of an embedded installation, generated on first start and kept in the data dir.

Environment variables win, so a deployment sets its own; a laptop gets random
secrets that survive restarts (tokens stay valid, person keys stay the same).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

SECRETS_FILE = "secrets.json"
_NAMES = ("jwt_secret", "person_key_secret")


def load_or_create(data_dir: Path) -> dict[str, str]:
    """Secrets to pass as settings overrides (only those the environment does not set).

    In production nothing is generated: replicas must share secrets, so they
    come from the environment and the settings refuse defaults.
    """
    if os.environ.get("FANGKONG_ENV") == "production":
        return {}
    path = data_dir / SECRETS_FILE
    stored: dict[str, str] = {}
    if path.exists():
        stored = json.loads(path.read_text())
    changed = False
    for name in _NAMES:
        if not stored.get(name):
            stored[name] = secrets.token_urlsafe(48)
            changed = True
    if changed:
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(stored, indent=2))
        os.chmod(tmp, 0o600)
        tmp.replace(path)
    return {name: value for name, value in stored.items()
            if name in _NAMES and not os.environ.get(f"FANGKONG_{name.upper()}")}
