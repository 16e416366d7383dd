"""Durable storage of the study's raters, assignments and ratings (SQLite).

WAL journal with ``synchronous=FULL``: a rating's transaction is on disk when ``record`` returns,
and the web app acknowledges a rating only after that, so killing the server loses nothing a
rater was told was saved. ``UNIQUE(rater, position)`` rejects a second answer to a trial even
under concurrent requests. Invitation tokens (``secrets.token_urlsafe``) are shown once and
stored only as SHA-256 hashes; a leaked database does not let anyone rate as someone else.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS raters (
    id INTEGER PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    slot INTEGER NOT NULL UNIQUE,
    label TEXT NOT NULL,
    invited_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS trials (
    rater INTEGER NOT NULL REFERENCES raters(id),
    position INTEGER NOT NULL,
    image_id TEXT NOT NULL,
    showing INTEGER NOT NULL,
    PRIMARY KEY (rater, position)
);
CREATE TABLE IF NOT EXISTS consents (
    rater INTEGER PRIMARY KEY REFERENCES raters(id),
    consented_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ratings (
    rater INTEGER NOT NULL,
    position INTEGER NOT NULL,
    realism INTEGER NOT NULL CHECK (realism BETWEEN 1 AND 5),
    pain INTEGER CHECK (pain IS NULL OR pain BETWEEN 0 AND 10),
    rated_at TEXT NOT NULL,
    UNIQUE (rater, position),
    FOREIGN KEY (rater, position) REFERENCES trials(rater, position)
);
"""


class RatingRejected(ValueError):
    """A submission the study refuses; ``status`` is the HTTP status the app answers with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Rater:
    id: int
    label: str


@dataclass(frozen=True)
class Trial:
    position: int
    image_id: str
    n_done: int
    n_total: int


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


class Store:
    """One SQLite file; every call opens its own connection, so threads never share one."""

    def __init__(self, path, design_id: str | None = None):
        """Open ``path`` (created for ``design_id`` when new). A database made for another trial
        set is refused: its positions would point at other images."""
        self.path = Path(path)
        if design_id is None and not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no study database (invite raters first)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            db.execute("INSERT OR IGNORE INTO meta VALUES ('csrf_secret', ?)",
                       (secrets.token_hex(32),))  # fmt: skip
            if design_id is not None:
                db.execute("INSERT OR IGNORE INTO meta VALUES ('design_id', ?)", (design_id,))
        stored = self.meta("design_id")
        if design_id is not None and stored != design_id:
            raise ValueError(
                f"{self.path} belongs to trial set {stored}, not {design_id}: use the trial set "
                "it was made for, or another --db"
            )
        self.design_id = stored

    @contextlib.contextmanager
    def _connect(self):
        """A connection in autocommit mode; transactions are explicit (BEGIN IMMEDIATE)."""
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            yield db
        finally:
            db.close()

    @contextlib.contextmanager
    def _transaction(self):
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def meta(self, key: str) -> str | None:
        with self._connect() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def csrf_token(self, rater: Rater) -> str:
        """The form token of ``rater`` (HMAC of a per-database secret): a page of one rater
        cannot post for another."""
        secret = self.meta("csrf_secret").encode()
        return hmac.new(secret, f"rater:{rater.id}".encode(), hashlib.sha256).hexdigest()

    def invite(self, trials: pd.DataFrame, labels: list[str]) -> list[tuple[str, str]]:
        """Give each label the next unused rater slot of ``trials`` (the trial set's table);
        returns ``(label, token)`` pairs. The tokens are not stored and cannot be shown again."""
        out = []
        with self._transaction() as db:
            used = {row[0] for row in db.execute("SELECT slot FROM raters")}
            free = [s for s in sorted(trials["slot"].unique()) if s not in used]
            if len(labels) > len(free):
                raise ValueError(
                    f"{len(labels)} invitations asked, {len(free)} rater slots left in the trial "
                    "set: build it with a larger study.n_raters"
                )
            for label, slot in zip(labels, free, strict=False):
                token = secrets.token_urlsafe(32)
                cursor = db.execute(
                    "INSERT INTO raters (token_hash, slot, label, invited_at) VALUES (?, ?, ?, ?)",
                    (hash_token(token), int(slot), label, _now()),
                )
                mine = trials[trials["slot"] == slot].sort_values("position")
                db.executemany(
                    "INSERT INTO trials VALUES (?, ?, ?, ?)",
                    [(cursor.lastrowid, int(r.position), r.image_id, int(r.showing))
                     for r in mine.itertuples()],
                )  # fmt: skip
                out.append((label, token))
        return out

    def rater(self, token: str) -> Rater | None:
        """The rater holding ``token``, or None for anything forged."""
        if not isinstance(token, str) or not 20 <= len(token) <= 100:
            return None
        with self._connect() as db:
            row = db.execute(
                "SELECT id, label FROM raters WHERE token_hash = ?", (hash_token(token),)
            ).fetchone()
        return Rater(*row) if row else None

    def consented(self, rater: Rater) -> bool:
        """Whether ``rater`` has agreed on the information page (their first screen)."""
        with self._connect() as db:
            row = db.execute("SELECT 1 FROM consents WHERE rater = ?", (rater.id,)).fetchone()
        return row is not None

    def consent(self, rater: Rater) -> None:
        """Record ``rater``'s agreement (once; the first time is kept)."""
        with self._transaction() as db:
            db.execute("INSERT OR IGNORE INTO consents VALUES (?, ?)", (rater.id, _now()))

    def next_trial(self, rater: Rater) -> Trial | None:
        """The first trial ``rater`` has not answered (None when finished): progress lives
        here, so closing the browser loses nothing."""
        with self._connect() as db:
            return self._next(db, rater)

    @staticmethod
    def _next(db, rater: Rater) -> Trial | None:
        total = db.execute("SELECT COUNT(*) FROM trials WHERE rater = ?", (rater.id,)).fetchone()
        done = db.execute("SELECT COUNT(*) FROM ratings WHERE rater = ?", (rater.id,)).fetchone()
        row = db.execute(
            "SELECT position, image_id FROM trials t WHERE rater = ? AND NOT EXISTS "
            "(SELECT 1 FROM ratings r WHERE r.rater = t.rater AND r.position = t.position) "
            "ORDER BY position LIMIT 1",
            (rater.id,),
        ).fetchone()
        return Trial(row[0], row[1], done[0], total[0]) if row else None

    def assigned(self, rater: Rater, image_id: str) -> bool:
        with self._connect() as db:
            row = db.execute(
                "SELECT 1 FROM trials WHERE rater = ? AND image_id = ?", (rater.id, image_id)
            ).fetchone()
        return row is not None

    def record(self, rater: Rater, position: int, realism: int, pain: int | None) -> None:
        """Store one answer to the rater's current trial; durable when this returns."""
        if not (isinstance(realism, int) and 1 <= realism <= 5):
            raise RatingRejected("realism must be a whole number from 1 to 5")
        if pain is not None and not (isinstance(pain, int) and 0 <= pain <= 10):
            raise RatingRejected("pain intensity must be a whole number from 0 to 10, or empty")
        with self._transaction() as db:
            if not db.execute("SELECT 1 FROM consents WHERE rater = ?", (rater.id,)).fetchone():
                raise RatingRejected("the information page has not been agreed to", 403)
            answered = db.execute(
                "SELECT 1 FROM ratings WHERE rater = ? AND position = ?", (rater.id, position)
            ).fetchone()
            if answered:
                raise RatingRejected("this trial was already rated; answers cannot be changed", 409)
            current = self._next(db, rater)
            if current is None:
                raise RatingRejected("all trials are already rated; thank you", 409)
            if position != current.position:
                raise RatingRejected(
                    "this is not the trial on your screen now; reload the page", 409
                )
            try:
                db.execute(
                    "INSERT INTO ratings VALUES (?, ?, ?, ?, ?)",
                    (rater.id, position, realism, pain, _now()),
                )
            except sqlite3.IntegrityError as exc:  # a concurrent duplicate got there first
                raise RatingRejected("this trial was already rated", 409) from exc

    def progress(self) -> pd.DataFrame:
        """Per rater: label, slot, trials done / total, last answer time, finished."""
        with self._connect() as db:
            table = pd.read_sql_query(
                "SELECT r.id AS rater, r.label, r.slot, r.invited_at, "
                "(SELECT consented_at FROM consents c WHERE c.rater = r.id) AS consented_at, "
                "(SELECT COUNT(*) FROM ratings x WHERE x.rater = r.id) AS done, "
                "(SELECT COUNT(*) FROM trials t WHERE t.rater = r.id) AS total, "
                "(SELECT MAX(rated_at) FROM ratings x WHERE x.rater = r.id) AS last_rating "
                "FROM raters r ORDER BY r.id",
                db,
            )
        table["finished"] = table["done"] == table["total"]
        return table

    def ratings(self) -> pd.DataFrame:
        """Every stored answer with what was shown: rater, slot, position, image id, showing."""
        with self._connect() as db:
            return pd.read_sql_query(
                "SELECT r.id AS rater, r.label, r.slot, t.position, t.image_id, t.showing, "
                "x.realism, x.pain, x.rated_at FROM ratings x "
                "JOIN trials t ON t.rater = x.rater AND t.position = x.position "
                "JOIN raters r ON r.id = x.rater ORDER BY r.id, t.position",
                db,
            )


def export_table(store: Store, trials_dir) -> pd.DataFrame:
    """Every rating with what the image was (the key joined in): the CSV the analysis reads."""
    from paincontrol_lib.study.design import load_key

    key = load_key(trials_dir)[["image_id", "kind", "method", "identity", "source", "pspi",
                                "expected"]]  # fmt: skip
    return store.ratings().merge(key, on="image_id", how="left", validate="many_to_one")
