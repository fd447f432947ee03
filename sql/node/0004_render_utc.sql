-- Tandem capture, version 4: the trigger renders rows under fixed settings,
-- whatever the writing session's: timestamps with time zone in UTC,
-- intervals in the postgres style, floats exactly. The same row written
-- from sessions in different time zones then has the same keys and values
-- in the queue, as the engine's own sessions and the WAL stream render it.
-- (A function's SET applies while it runs only: the application's session
-- keeps its own settings.)
ALTER FUNCTION tandem.capture() SET "TimeZone" = 'UTC';
ALTER FUNCTION tandem.capture() SET "IntervalStyle" = 'postgres';
ALTER FUNCTION tandem.capture() SET extra_float_digits = 3;
