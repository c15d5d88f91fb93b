"""Each service's own database, from one installation-wide setting.

Services never share a database (DESIGN: a service owns its data). Embedded on
SQLite that is a file per service under the data dir; given one PostgreSQL URL
(``--database-url postgresql+asyncpg://…/fangkong``) each service gets its own
database named ``fangkong_<service>`` on that server, created when missing.
``FANGKONG_<SERVICE>_DATABASE_URL`` names one service's database outright.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine


def service_database_urls(base: str | None, names: Iterable[str]) -> dict[str, str]:
    """``{service: url}`` for the services whose database is not the default SQLite file."""
    urls: dict[str, str] = {}
    if base:
        url = make_url(base)
        if url.get_backend_name() != "postgresql":
            raise ValueError("--database-url takes a PostgreSQL URL (postgresql+asyncpg://user:pass@host:port/name); "
                             "without it each service keeps a SQLite file under the data dir")
        if not url.database:
            raise ValueError("--database-url needs a database name; each service gets <name>_<service>")
        for name in names:
            urls[name] = url.set(database=f"{url.database}_{name}").render_as_string(hide_password=False)
    for name in names:
        explicit = os.environ.get(f"FANGKONG_{name.upper()}_DATABASE_URL")
        if explicit:
            urls[name] = explicit
    return urls


async def ensure_postgres_databases(base: str, urls: Iterable[str]) -> list[str]:
    """Create the PostgreSQL databases that do not exist yet (connecting through ``base``'s
    server and its maintenance database); returns the names created."""
    server = make_url(base).set(database="postgres")
    wanted = [make_url(u).database for u in urls if make_url(u).get_backend_name() == "postgresql"]
    created: list[str] = []
    engine = create_async_engine(server, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            for name in wanted:
                exists = await connection.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
                if not exists:
                    # A name cannot be a bind parameter; it is ours (<name>_<service>), quoted anyway.
                    await connection.execute(text(f'CREATE DATABASE "{name.replace(chr(34), "")}"'))
                    created.append(name)
    finally:
        await engine.dispose()
    return created
