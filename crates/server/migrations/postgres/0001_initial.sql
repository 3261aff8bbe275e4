-- echo-server schema, version 1: everything the file store keeps, and the
-- attempt ledger. Applied once per database by the server that starts first
-- (under an advisory lock), recorded in schema_migrations.
-- Times are Unix seconds (bigint), as in the file store's journal.

CREATE TABLE users (
    name          text PRIMARY KEY,
    -- NFKC + case folding (RFC 8265 UsernameCaseMapped): any spelling of a
    -- name finds its user.
    canonical     text NOT NULL UNIQUE,
    -- UTS #39 skeleton of the canonical form: a new name that looks like an
    -- existing one is refused.
    lookalike     text NOT NULL UNIQUE,
    password_hash text NOT NULL,
    created       bigint NOT NULL
);

-- One row per session chain ("family"); `current` is the SHA-256 of the
-- token that works now.
CREATE TABLE sessions (
    family    uuid PRIMARY KEY,
    user_name text NOT NULL REFERENCES users (name) ON DELETE CASCADE ON UPDATE CASCADE,
    created   bigint NOT NULL,
    last_used bigint NOT NULL,
    current   bytea NOT NULL,
    rotations integer NOT NULL DEFAULT 0
);
CREATE INDEX sessions_by_user ON sessions (user_name);

-- Every token a chain ever had (current or rotated away), for its whole
-- life: any of them presented again is reuse.
CREATE TABLE session_tokens (
    hash   bytea PRIMARY KEY,
    family uuid NOT NULL REFERENCES sessions (family) ON DELETE CASCADE
);
CREATE INDEX session_tokens_by_family ON session_tokens (family);

-- Identification mode (lab task 5) and the user suggested to an address.
CREATE TABLE identities (
    ip   inet PRIMARY KEY,
    name text NOT NULL,
    seen bigint NOT NULL
);

-- The attempt ledger: failed passwords per account (canonical name) ...
CREATE TABLE attempt_accounts (
    account       text PRIMARY KEY,
    consecutive   integer NOT NULL,
    blocked_until bigint NOT NULL,
    day           bigint NOT NULL,
    today         integer NOT NULL
);

-- ... and a token bucket of password attempts per address.
CREATE TABLE attempt_addresses (
    ip      inet PRIMARY KEY,
    tokens  double precision NOT NULL,
    updated bigint NOT NULL
);

-- A chain that ends, for whatever reason (reuse, logout, an admin command,
-- a new password, a removed user, expiry), is announced to every server,
-- which ends the live connections it authenticated.
CREATE FUNCTION echo_session_ended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('echo_revoked', OLD.family::text);
    RETURN OLD;
END
$$;
CREATE TRIGGER sessions_ended AFTER DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION echo_session_ended();

-- Token rotation in one round trip, atomic across servers: the chain's row
-- is locked, so of two servers presenting the same token at once, one
-- rotates and the other sees a rotated-away token (reuse: the chain ends).
CREATE FUNCTION echo_rotate(
    p_presented bytea, p_next bytea, p_now bigint,
    p_idle bigint, p_absolute bigint, p_max_rotations integer
) RETURNS TABLE (r_outcome text, r_family uuid, r_user text, r_created bigint)
LANGUAGE plpgsql AS $$
DECLARE
    chain sessions%ROWTYPE;
BEGIN
    SELECT s.* INTO chain
        FROM session_tokens t JOIN sessions s ON s.family = t.family
        WHERE t.hash = p_presented
        FOR UPDATE OF s;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'unknown'::text, NULL::uuid, NULL::text, NULL::bigint;
        RETURN;
    END IF;
    IF chain.current <> p_presented THEN
        DELETE FROM sessions WHERE family = chain.family;
        RETURN QUERY SELECT 'reused'::text, chain.family, chain.user_name, chain.created;
        RETURN;
    END IF;
    IF chain.rotations >= p_max_rotations
        OR LEAST(chain.created + p_absolute, chain.last_used + p_idle) <= p_now THEN
        DELETE FROM sessions WHERE family = chain.family;
        RETURN QUERY SELECT 'expired'::text, chain.family, chain.user_name, chain.created;
        RETURN;
    END IF;
    UPDATE sessions SET current = p_next, last_used = p_now, rotations = chain.rotations + 1
        WHERE family = chain.family;
    INSERT INTO session_tokens (hash, family) VALUES (p_next, chain.family);
    RETURN QUERY SELECT 'rotated'::text, chain.family, chain.user_name, chain.created;
END
$$;

-- A visit (the user last seen from an address, refreshed once a day) is a
-- hint for `ask_auth`, not an account: it is written without waiting for the
-- WAL flush, so that many users behind one address (a NAT, a benchmark) do
-- not queue on that address's row behind each other's fsyncs. A crash may
-- lose the last visits; never a user, a session or a name given in
-- identification mode (those commit durably).
CREATE FUNCTION echo_note_visit(p_ip inet, p_name text, p_seen bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    INSERT INTO identities (ip, name, seen) VALUES (p_ip, p_name, p_seen)
        ON CONFLICT (ip) DO UPDATE SET name = EXCLUDED.name, seen = EXCLUDED.seen;
END
$$;
