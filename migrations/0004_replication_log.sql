-- The change outbox that feeds the edges (DESIGN.md, "Central ⇄ edge").
--
-- Every change that affects a validation answer writes a row here in the same transaction as
-- the change. The sequence comes from a counter row updated inside that transaction, not from a
-- BIGSERIAL: the row lock serializes writers, so commit order equals sequence order and there are
-- no gaps — a reader that asks for `seq > last` never skips a row committed late. NOTIFY is only
-- a wake-up; the table is the source of truth.

CREATE TABLE replication_state (
    id          boolean PRIMARY KEY DEFAULT true CHECK (id),
    last_seq    bigint NOT NULL DEFAULT 0
);
INSERT INTO replication_state DEFAULT VALUES;

COMMENT ON TABLE replication_state IS 'The single counter row that orders replication_log.';

CREATE TABLE replication_log (
    seq         bigint PRIMARY KEY,
    kind        text NOT NULL,
    entity_id   uuid NOT NULL,
    payload     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT replication_log_kind_check CHECK (kind IN ('license.upsert', 'license.delete', 'product.upsert'))
);

COMMENT ON TABLE replication_log IS 'Outbox of changes for the edges, gapless and in commit order.';

CREATE INDEX replication_log_created_at_idx ON replication_log (created_at);

-- Appends one change; call inside the transaction that makes it.
CREATE FUNCTION replication_append(p_kind text, p_entity uuid, p_payload jsonb) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    next_seq bigint;
BEGIN
    UPDATE replication_state SET last_seq = last_seq + 1 RETURNING last_seq INTO next_seq;
    INSERT INTO replication_log (seq, kind, entity_id, payload) VALUES (next_seq, p_kind, p_entity, p_payload);
    PERFORM pg_notify('replication_log', next_seq::text);
    RETURN next_seq;
END;
$$;

-- Whether licenses of a product validate: published or archived (sold no more, still honoured),
-- and not deleted. Drafts and coming-soon products have no valid licenses yet.
CREATE FUNCTION product_validates(p_status text, p_deleted_at timestamptz) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_deleted_at IS NULL AND p_status IN ('published', 'archived')
$$;

-- What an edge holds of a license: everything a validation needs, never the key itself.
CREATE FUNCTION license_replica(p_license uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', l.id,
        'key_hash', encode(l.key_hash, 'hex'),
        'product_code', p.code,
        'product_active', product_validates(p.status, p.deleted_at),
        'status', l.status,
        'expires_at', l.expires_at,
        'max_ips', l.max_ips,
        'bound_ips', coalesce((SELECT jsonb_agg(host(b.ip_address) ORDER BY b.ip_address)
                               FROM license_ip_bindings b WHERE b.license_id = l.id), '[]'::jsonb))
    FROM licenses l JOIN products p ON p.id = l.product_id
    WHERE l.id = p_license
$$;

-- Appends the current state of a license.
CREATE FUNCTION replicate_license(p_license uuid) RETURNS bigint
LANGUAGE sql AS $$
    SELECT replication_append('license.upsert', p_license, license_replica(p_license))
$$;

-- Appends a product's availability (edges apply it to every license of the product).
CREATE FUNCTION replicate_product(p_product uuid) RETURNS bigint
LANGUAGE sql AS $$
    SELECT replication_append('product.upsert', p.id,
                              jsonb_build_object('id', p.id, 'code', p.code,
                                                 'active', product_validates(p.status, p.deleted_at)))
    FROM products p WHERE p.id = p_product
$$;
