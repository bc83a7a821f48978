-- License lists are ordered by (created_at, id) — the id breaks ties so pages stay stable. An
-- index on exactly that order lets a page be read without sorting the table, even when many
-- licenses share a creation time (bulk issuance).
CREATE INDEX licenses_created_at_id_idx ON licenses (created_at DESC, id DESC);
