-- The validation writer updates counters on licenses, their bindings and the daily usage log
-- for every batch of validations. Leaving free space in each page lets PostgreSQL keep those
-- updates HOT (the new row version on the same page, no index entry written): none of the
-- columns they change is indexed. Applies to pages written from now on; an existing large table
-- takes it fully after a rewrite (VACUUM FULL or pg_repack), which this migration does not force.
ALTER TABLE licenses SET (fillfactor = 85);
ALTER TABLE license_ip_bindings SET (fillfactor = 85);
ALTER TABLE license_usage_log SET (fillfactor = 70);

-- Superseded by licenses_created_at_id_idx (created_at DESC, id DESC) of migration 0007, which
-- serves every ORDER BY created_at DESC this one did; one index fewer to write per license.
DROP INDEX IF EXISTS licenses_created_at_idx;
