-- echo-server schema, version 2: expired chains and forgotten addresses are
-- deleted by each server about once a minute (`PgStore::sweep`). A chain
-- deleted for having expired is not announced as revoked: a connection it
-- authenticated goes on, as with the file store, which forgets expired
-- chains when it compacts its journal.
CREATE OR REPLACE FUNCTION echo_session_ended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('echo.sweeping', true) = 'on' THEN
        RETURN OLD;
    END IF;
    PERFORM pg_notify('echo_revoked', OLD.family::text);
    RETURN OLD;
END
$$;

CREATE INDEX identities_by_seen ON identities (seen);
