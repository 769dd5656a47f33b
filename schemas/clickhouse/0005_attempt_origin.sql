-- Where each attempt's event is and why the attempt was made: the event's
-- position on <p>.events (partition, offset), from which a delivery is
-- resent or recovered, and the trigger of its run ('' live, resend,
-- recover, replay, redrive). One ALTER, so that it applies whole or not at
-- all; a repeat after a crash between the ALTER and its record finds the
-- columns there (exception 44), which the migration runner takes as applied.
ALTER TABLE {db}.attempts
    ADD COLUMN trigger String DEFAULT '',
    ADD COLUMN event_partition Int32 DEFAULT -1,
    ADD COLUMN event_offset Int64 DEFAULT -1
