-- The registry as the file backend holds it (pki/src/registry/data.rs): one row of settings,
-- every certificate issued, every enrollment token.

CREATE TABLE registry_meta (
    -- One row; every change locks it (SELECT ... FOR UPDATE), so changes of all servers
    -- happen one after the other.
    id integer PRIMARY KEY CHECK (id = 1),
    format integer NOT NULL,
    pool text NOT NULL,
    prefix_len integer NOT NULL CHECK (prefix_len BETWEEN 0 AND 128),
    grace_days bigint NOT NULL CHECK (grace_days >= 0),
    crl_number bigint NOT NULL CHECK (crl_number >= 0)
);

CREATE TABLE clients (
    -- Order of issue, as the file keeps it.
    seq bigserial PRIMARY KEY,
    serial text NOT NULL UNIQUE,
    name text NOT NULL,
    prefix text NOT NULL,
    issued bigint NOT NULL,
    not_after bigint NOT NULL,
    certificate text NOT NULL,
    revoked_at bigint,
    key_compromise boolean NOT NULL DEFAULT false,
    superseded_at bigint,
    superseded_by text
);
CREATE INDEX clients_by_name ON clients (name);
-- Two current certificates never carry one prefix, whatever a server's code does.
CREATE UNIQUE INDEX clients_one_current_per_prefix ON clients (prefix)
    WHERE revoked_at IS NULL AND superseded_at IS NULL;

CREATE TABLE tokens (
    seq bigserial PRIMARY KEY,
    secret_sha256 text NOT NULL UNIQUE,
    name text NOT NULL,
    created bigint NOT NULL,
    expires bigint NOT NULL,
    used bigint,
    used_serial text
);

-- Every server listening on hometun_registry learns a revocation when it commits.
CREATE FUNCTION hometun_notify_revoked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('hometun_registry',
        json_build_object('revoked', NEW.name, 'serial', NEW.serial)::text);
    RETURN NEW;
END $$;
CREATE TRIGGER clients_revoked AFTER UPDATE OF revoked_at ON clients
    FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
    EXECUTE FUNCTION hometun_notify_revoked();
