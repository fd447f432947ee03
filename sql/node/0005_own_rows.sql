-- Tandem capture, version 5: an index of the queue rows tandem wrote itself
-- (origin set: an apply's marker, per-row echoes, a conflict's settlement).
-- A pull that stops part way through a backlog first makes sure none of the
-- sync's own rows is left behind; with this index that is a lookup, not a
-- walk of the whole queue. Application rows (origin NULL) are not in it.
CREATE INDEX IF NOT EXISTS change_queue_origin ON tandem.change_queue (origin) WHERE origin IS NOT NULL;
