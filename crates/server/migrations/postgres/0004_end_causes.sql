-- echo-server schema, version 4: the end of a session chain says why.
-- A statement that ends chains names the cause (logout, reuse, operator,
-- password_changed, expired) in the transaction's setting `echo.ending`,
-- through echo_ending() in its WHERE clause (echo_rotate sets it itself),
-- and the trigger announces `CHAIN CAUSE` on the channel `echo_ended`,
-- which servers from this version listen on. `echo_revoked` still carries
-- the bare chain id, for servers of an older version that keep running
-- while the first new one migrates the database.

CREATE FUNCTION echo_ending(p_cause text) RETURNS boolean LANGUAGE sql VOLATILE AS $$
    SELECT set_config('echo.ending', p_cause, true) IS NOT NULL
$$;

CREATE OR REPLACE FUNCTION echo_session_ended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('echo.sweeping', true) = 'on' THEN
        RETURN OLD;
    END IF;
    PERFORM pg_notify('echo_revoked', OLD.family::text);
    PERFORM pg_notify('echo_ended',
        OLD.family::text || ' ' || coalesce(current_setting('echo.ending', true), ''));
    RETURN OLD;
END
$$;

CREATE OR REPLACE FUNCTION echo_rotate(
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
        PERFORM set_config('echo.ending', 'reuse', true);
        DELETE FROM sessions WHERE family = chain.family;
        RETURN QUERY SELECT 'reused'::text, chain.family, chain.user_name, chain.created;
        RETURN;
    END IF;
    IF chain.rotations >= p_max_rotations
        OR LEAST(chain.created + p_absolute, chain.last_used + p_idle) <= p_now THEN
        PERFORM set_config('echo.ending', 'expired', true);
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
