-- tandem capture on node crm: version 5 -> 5
-- capture: wal: publication tandem, replication slot tandem_SLOT (pgoutput)
-- NOTE: table public.contacts on node crm has replica identity DEFAULT or USING INDEX: its updates carry no old values, so every column counts as changed, and edits of different fields on both sides conflict instead of merging. For field-level merge (at the cost of logging whole old rows): ALTER TABLE "public"."contacts" REPLICA IDENTITY FULL;
-- NOTE: node crm had capture before but no slot tandem_SLOT: the slot streams what is committed from its creation on, not what was written while there was none
BEGIN;
DROP TRIGGER "tandem_capture_delete" ON "public"."contacts";
DROP TRIGGER "tandem_capture_insert" ON "public"."contacts";
DROP TRIGGER "tandem_capture_truncate" ON "public"."contacts";
DROP TRIGGER "tandem_capture_update" ON "public"."contacts";
CREATE PUBLICATION "tandem" FOR TABLE "public"."contacts", "public"."Odd ""Name""" WITH (publish = 'insert, update, delete, truncate', publish_via_partition_root = true);
COMMIT;
-- after COMMIT, each on its own: a replication slot cannot be created or dropped
-- in a transaction that has written
SELECT pg_create_logical_replication_slot('tandem_SLOT', 'pgoutput');
