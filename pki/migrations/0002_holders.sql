-- Which server holds each home (failover): one row per home some server claimed.

CREATE TABLE holders (
    home text PRIMARY KEY,
    server text NOT NULL,
    since bigint NOT NULL
);

-- The server that held a home learns at once that another one claimed it.
CREATE FUNCTION hometun_notify_claimed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('hometun_registry',
        json_build_object('claimed', NEW.home, 'server', NEW.server, 'since', NEW.since)::text);
    RETURN NEW;
END $$;
CREATE TRIGGER holders_claimed AFTER INSERT OR UPDATE ON holders
    FOR EACH ROW EXECUTE FUNCTION hometun_notify_claimed();
