-- echo-server's SQLite schema, version 1: what the PostgreSQL schema keeps
-- (crates/server/migrations/), in one file that any number of servers and
-- admin commands on one machine share. Applied at start by the first
-- process to take the write lock; PRAGMA user_version records the version.
-- Times are Unix seconds; a session chain's id ("family") is its UUID as
-- text; an address (or an IPv6 /64, as its prefix) is its text form.

CREATE TABLE users (
    name          TEXT PRIMARY KEY,
    -- NFKC + case folding (RFC 8265 UsernameCaseMapped): any spelling of a
    -- name finds its user.
    canonical     TEXT NOT NULL UNIQUE,
    -- UTS #39 skeleton of the canonical form: a new name that looks like an
    -- existing one is refused.
    lookalike     TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created       INTEGER NOT NULL
) STRICT;

-- One row per session chain; `current` is the SHA-256 of the token that
-- works now.
CREATE TABLE sessions (
    family    TEXT PRIMARY KEY,
    user_name TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE ON UPDATE CASCADE,
    created   INTEGER NOT NULL,
    last_used INTEGER NOT NULL,
    current   BLOB NOT NULL,
    rotations INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX sessions_by_user ON sessions (user_name);

-- Every token a chain ever had (current or rotated away), for its whole
-- life: any of them presented again is reuse.
CREATE TABLE session_tokens (
    hash   BLOB PRIMARY KEY,
    family TEXT NOT NULL REFERENCES sessions (family) ON DELETE CASCADE
) STRICT;
CREATE INDEX session_tokens_by_family ON session_tokens (family);

-- Identification mode (lab task 5) and the user suggested to an address.
CREATE TABLE identities (
    ip   TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    seen INTEGER NOT NULL
) STRICT;
CREATE INDEX identities_by_seen ON identities (seen);

-- The attempt ledger: an account's failed passwords from one source ...
CREATE TABLE attempt_sources (
    account       TEXT NOT NULL,
    source        TEXT NOT NULL,
    consecutive   INTEGER NOT NULL,
    blocked_until INTEGER NOT NULL,
    day           INTEGER NOT NULL,
    today         INTEGER NOT NULL,
    PRIMARY KEY (account, source)
) STRICT;

-- ... its failures from sources it never logged in from, per day ...
CREATE TABLE attempt_accounts (
    account TEXT PRIMARY KEY,
    day     INTEGER NOT NULL,
    today   INTEGER NOT NULL
) STRICT;

-- ... and a token bucket of password attempts per source.
CREATE TABLE attempt_addresses (
    ip      TEXT PRIMARY KEY,
    tokens  REAL NOT NULL,
    updated INTEGER NOT NULL
) STRICT;

-- The sources each account logged in from with its password, and when
-- last; forgotten 90 days after.
CREATE TABLE familiar_sources (
    account TEXT NOT NULL,
    source  TEXT NOT NULL,
    seen    INTEGER NOT NULL,
    PRIMARY KEY (account, source)
) STRICT;
CREATE INDEX familiar_sources_by_seen ON familiar_sources (seen);

-- A chain that ends (reuse, logout, an admin command, a new password, a
-- removed user, expiry at a resume) is written here in the same
-- transaction, with why (`cause`: logout, reuse, operator,
-- password_changed, expired; NULL when the statement did not say, as for
-- a row deleted by hand). Every server follows the sequence and ends the
-- live connections the chain authenticated, saying the cause in their
-- `bye`. SQLite has no LISTEN: a server reads the rows after the last it
-- saw. Rows older than an hour are deleted by the sweep.
CREATE TABLE revocations (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    family TEXT NOT NULL,
    cause  TEXT,
    at     INTEGER NOT NULL
) STRICT;

-- The cause of the chains the current statement ends: one row, set by the
-- writer around a statement that ends chains and cleared after it, read
-- by the trigger (SQLite has no per-transaction settings).
CREATE TABLE ending (
    one   INTEGER PRIMARY KEY CHECK (one = 1),
    cause TEXT
) STRICT;
INSERT INTO ending (one, cause) VALUES (1, NULL);

CREATE TRIGGER sessions_ended AFTER DELETE ON sessions
BEGIN
    INSERT INTO revocations (family, cause, at)
        VALUES (OLD.family, (SELECT cause FROM ending WHERE one = 1), unixepoch());
END;
