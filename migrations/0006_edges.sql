-- The edge fleet as central sees it (GET /api/edges): one row per edge id ever connected, kept
-- current by its replication session.

CREATE TABLE edges (
    id                  text PRIMARY KEY,
    region              text NOT NULL,
    address             text,
    connected           boolean NOT NULL DEFAULT false,
    protocol_version    integer NOT NULL,
    applied_seq         bigint NOT NULL DEFAULT 0,
    reports_received    bigint NOT NULL DEFAULT 0,
    connected_at        timestamptz,
    disconnected_at     timestamptz,
    last_seen_at        timestamptz NOT NULL DEFAULT now(),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT edges_id_check CHECK (id ~ '^[A-Za-z0-9_-]{1,64}$'),
    CONSTRAINT edges_region_check CHECK (region ~ '^[A-Za-z0-9_-]{1,64}$')
);

COMMENT ON TABLE edges IS 'Edge nodes known to central: region, connection state, replication progress.';

CREATE INDEX edges_region_idx ON edges (region);

CREATE TRIGGER set_updated_at BEFORE UPDATE ON edges
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
