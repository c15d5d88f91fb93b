"""A file that lets the in-process bus survive its process (the embedded platform).

The outbox marks an event published once the bus has it; without a journal an
event published but not yet consumed when the process dies would be gone.
Records are written (and synced) before ``publish`` returns, and a group's
committed offsets after each batch, in one SQLite file; a restart reloads what
some group has not consumed yet. Consumers are idempotent, so a batch applied
just before a crash and replayed after it changes nothing.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from fangkong_common.bus.base import Record

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, "offset" INTEGER NOT NULL,
    key BLOB, value BLOB NOT NULL, headers TEXT NOT NULL,
    PRIMARY KEY (topic, partition, "offset")) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS commits (
    grp TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL, committed INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, partition)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS subscriptions (grp TEXT NOT NULL, topic TEXT NOT NULL, PRIMARY KEY (grp, topic))
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class Journal:
    def __init__(self, path: Path, partitions: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        # FULL: a record the outbox has marked published must be on disk, even after a power cut.
        self._db.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;" + _SCHEMA)
        stored = self._db.execute("SELECT value FROM meta WHERE name = 'partitions'").fetchone()
        if stored is None:
            self._db.execute("INSERT INTO meta VALUES ('partitions', ?)", (str(partitions),))
        # Keys were spread over the stored partition count; keep it, or per-key order breaks.
        self.partitions = int(stored[0]) if stored else partitions

    def append(self, records: Iterable[Record]) -> None:
        rows = [(r.topic, r.partition, r.offset, r.key, r.value,
                 json.dumps([[k, v.decode("latin-1")] for k, v in r.headers])) for r in records]
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?)", rows)
            self._db.execute("COMMIT")

    def commit(self, group: str, offsets: dict[tuple[str, int], int]) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO commits VALUES (?, ?, ?, ?) ON CONFLICT (grp, topic, partition) "
                "DO UPDATE SET committed = max(committed, excluded.committed)",
                [(group, topic, partition, offset) for (topic, partition), offset in offsets.items()])
            self._db.execute("COMMIT")

    def subscribed(self, group: str, topics: Iterable[str]) -> None:
        with self._lock:
            self._db.executemany("INSERT OR IGNORE INTO subscriptions VALUES (?, ?)", [(group, t) for t in topics])

    def committed(self) -> dict[str, dict[tuple[str, int], int]]:
        groups: dict[str, dict[tuple[str, int], int]] = {}
        for group, topic, partition, offset in self._db.execute("SELECT grp, topic, partition, committed FROM commits"):
            groups.setdefault(group, {})[(topic, partition)] = offset
        return groups

    def ends(self) -> dict[tuple[str, int], int]:
        """The next offset of every partition ever written (kept even when its records are trimmed)."""
        ends = {(t, p): int(end) for t, p, end in self._db.execute(
            'SELECT topic, partition, max("offset") + 1 FROM records GROUP BY topic, partition')}
        for name, value in self._db.execute("SELECT name, value FROM meta WHERE name LIKE 'end:%'"):
            topic, partition = json.loads(name[4:])
            ends[(topic, partition)] = max(ends.get((topic, partition), 0), int(value))
        return ends

    def floors(self) -> dict[tuple[str, int], int]:
        """Per partition, the offset every group subscribed to its topic has committed (a group
        that has not committed a partition yet holds all of it): what lies below is consumed."""
        floors: dict[tuple[str, int], int] = {}
        partitions = self._db.execute("SELECT DISTINCT topic, partition FROM records").fetchall()
        groups: dict[str, list[str]] = {}
        for group, topic in self._db.execute("SELECT grp, topic FROM subscriptions"):
            groups.setdefault(topic, []).append(group)
        committed = {(g, t, p): c for g, t, p, c in self._db.execute("SELECT grp, topic, partition, committed FROM commits")}
        for topic, partition in partitions:
            if topic in groups:
                floors[(topic, partition)] = min(committed.get((g, topic, partition), 0) for g in groups[topic])
        return floors

    def trim(self) -> dict[tuple[str, int], int]:
        """Forget the consumed records (see ``floors``); returns the floors it trimmed to."""
        with self._lock:
            self._db.execute("BEGIN")
            # Remember where each partition ended before its records go, so offsets never restart at 0.
            for (topic, partition), end in self.ends().items():
                self._db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                                 ("end:" + json.dumps([topic, partition]), str(end)))
            floors = self.floors()
            # One range delete per partition on the primary key, not a scan of every record.
            self._db.executemany('DELETE FROM records WHERE topic = ? AND partition = ? AND "offset" < ?',
                                 [(t, p, floor) for (t, p), floor in floors.items() if floor > 0])
            self._db.execute("COMMIT")
        return floors

    def records(self) -> Iterator[Record]:
        for topic, partition, offset, key, value, headers in self._db.execute(
                'SELECT topic, partition, "offset", key, value, headers FROM records '
                'ORDER BY topic, partition, "offset"'):
            yield Record(topic, partition, offset, key, value,
                         tuple((k, v.encode("latin-1")) for k, v in json.loads(headers)))

    def close(self) -> None:
        with self._lock:
            self._db.close()
