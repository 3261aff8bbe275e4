-- echo-server schema, version 3: password failures are counted per account
-- and source, and each account remembers the sources it logged in from.
-- A source is what the connection caps count: an IPv4 address, or an IPv6
-- /64 stored as its prefix (`2001:db8:1:2::`), so that every address of
-- one /64 shares one row.

-- An account's failed passwords from one source: its run of failures and
-- back-off, and its count for the day.
CREATE TABLE attempt_sources (
    account       text NOT NULL,
    source        inet NOT NULL,
    consecutive   integer NOT NULL,
    blocked_until bigint NOT NULL,
    day           bigint NOT NULL,
    today         integer NOT NULL,
    PRIMARY KEY (account, source)
);

-- attempt_accounts now counts, per account and day, the failures from
-- sources the account never logged in from (`day`, `today`); its run of
-- failures is kept per source above. A back-off in force from before is
-- lifted: it was the account-wide lockout this version ends.
UPDATE attempt_accounts SET consecutive = 0, blocked_until = 0;

-- The password allowance is now per source: rows per IPv6 address mean
-- nothing any more (a bucket refills within a minute anyway).
DELETE FROM attempt_addresses;

-- The sources each account logged in from with its password, and when
-- last; forgotten 90 days after (`PgStore::sweep`).
CREATE TABLE familiar_sources (
    account text NOT NULL,
    source  inet NOT NULL,
    seen    bigint NOT NULL,
    PRIMARY KEY (account, source)
);
CREATE INDEX familiar_sources_by_seen ON familiar_sources (seen);

-- A login from a source: remembered, and beyond p_keep sources for the
-- account, the ones logged in from longest ago are forgotten. The account's
-- rows are locked first, so two servers noting at once keep the count.
CREATE FUNCTION echo_note_familiar(p_account text, p_source inet, p_seen bigint, p_keep integer)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('echo_familiar:' || p_account));
    INSERT INTO familiar_sources (account, source, seen) VALUES (p_account, p_source, p_seen)
        ON CONFLICT (account, source)
        DO UPDATE SET seen = GREATEST(familiar_sources.seen, EXCLUDED.seen);
    DELETE FROM familiar_sources
        WHERE account = p_account AND source NOT IN (
            SELECT source FROM familiar_sources WHERE account = p_account
            ORDER BY seen DESC LIMIT p_keep);
END
$$;
