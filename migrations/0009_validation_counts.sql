-- Nothing dropped under overload: when PostgreSQL is slow or down, central's validation recorder
-- coalesces validations (the same license, IP address, result code and minute) into one row with
-- a count instead of dropping any, and past its memory bound folds coarser — without the address,
-- then without the license (see central/src/licensing/recorder/coalesce.rs). Every reader that
-- counts validations sums `count`; collision detection needs only the distinct addresses.
ALTER TABLE license_validations
    ADD COLUMN count integer NOT NULL DEFAULT 1
        CONSTRAINT license_validations_count_check CHECK (count >= 1),
    ALTER COLUMN ip_address DROP NOT NULL,
    -- Only a row standing for several validations may have lost its address.
    ADD CONSTRAINT license_validations_ip_address_check CHECK (ip_address IS NOT NULL OR count > 1);

COMMENT ON COLUMN license_validations.count IS
    'How many validations this row stands for: 1, or more for validations coalesced under overload.';
COMMENT ON COLUMN license_validations.ip_address IS
    'The client address; NULL only on a coalesced row whose validations came from several addresses.';

-- The edges' report batches already stored, by the edge's batch id: a batch sent again (its
-- acknowledgement was lost) is recognised and not counted twice, even when its reports were
-- stored coalesced, without their own ids. Kept for a week (an edge resends only until it is
-- acknowledged); the recorder prunes older ones.
CREATE TABLE replication_report_batches (
    batch_id        uuid PRIMARY KEY,
    edge_id         text NOT NULL,
    report_count    integer NOT NULL,
    stored_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT replication_report_batches_report_count_check CHECK (report_count >= 0)
);

CREATE INDEX replication_report_batches_stored_at_idx ON replication_report_batches (stored_at);
