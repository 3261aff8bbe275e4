-- Every change to `identities` (a name remembered or refreshed, an address
-- forgotten, the sweep) counts one here, in its own transaction. A server
-- keeps the names it has read in memory and reads this counter with its
-- revocations (every 100 ms): when another process changed an address's
-- name, the server forgets what it kept and reads again.
CREATE TABLE identity_changes (
    one     INTEGER PRIMARY KEY CHECK (one = 1),
    version INTEGER NOT NULL
) STRICT;
INSERT INTO identity_changes (one, version) VALUES (1, 0);

CREATE TRIGGER identities_inserted AFTER INSERT ON identities
BEGIN
    UPDATE identity_changes SET version = version + 1 WHERE one = 1;
END;
CREATE TRIGGER identities_updated AFTER UPDATE ON identities
BEGIN
    UPDATE identity_changes SET version = version + 1 WHERE one = 1;
END;
CREATE TRIGGER identities_deleted AFTER DELETE ON identities
BEGIN
    UPDATE identity_changes SET version = version + 1 WHERE one = 1;
END;
