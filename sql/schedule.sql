--
-- schedule: the rules of subexpire.schedule, through subexpire_next_runs(),
-- which uses the worker's own code.
--
SET timezone = 'UTC';

-- The defaults: 02:00 UTC every day.
SELECT * FROM subexpire_next_runs(after => '2026-11-28 12:00+00', count => 3);
SELECT * FROM subexpire_next_runs(NULL, NULL, '2026-11-28 01:59:59+00', 1);

-- DST in America/New_York: 02:30 does not exist on 2026-03-08 (02:00 jumps
-- to 03:00), so it fires at the first instant after the jump, 03:00 EDT.
SELECT * FROM subexpire_next_runs('30 2 * * *', 'America/New_York', '2026-03-07 12:00+00', 3);
-- Every skipped time of the gap fires once, at the jump.
SELECT * FROM subexpire_next_runs('*/20 2 * * *', 'America/New_York', '2026-03-08 06:00+00', 4);
-- 01:30 happens twice on 2026-11-01 (02:00 EDT goes back to 01:00 EST): it
-- fires at the first, 05:30 UTC, and not at the second, 06:30 UTC.
SELECT * FROM subexpire_next_runs('30 1 * * *', 'America/New_York', '2026-10-31 12:00+00', 2);
SELECT * FROM subexpire_next_runs('*/30 * * * *', 'America/New_York', '2026-11-01 05:00+00', 4);
-- Europe/Berlin and a zone whose clocks move by 30 minutes.
SELECT * FROM subexpire_next_runs('0 9 * * *', 'Europe/Berlin', '2026-03-28 12:00+00', 3);
SELECT * FROM subexpire_next_runs('15 2 * * *', 'Australia/Lord_Howe', '2026-10-03 12:00+00', 2);

-- Steps, lists, ranges, names.
SELECT * FROM subexpire_next_runs('*/15 * * * *', 'UTC', '2026-01-01 00:07+00', 4);
SELECT * FROM subexpire_next_runs('5,35 */6 * * *', 'UTC', '2026-01-01 00:00+00', 5);
SELECT * FROM subexpire_next_runs('0 9-17/4 * * *', 'UTC', '2026-01-01 00:00+00', 4);
SELECT * FROM subexpire_next_runs('10/20 0 * * *', 'UTC', '2026-01-01 00:00+00', 3);
SELECT * FROM subexpire_next_runs('0 0 1 jan,Jul *', 'UTC', '2026-01-01 00:00+00', 3);
SELECT * FROM subexpire_next_runs('0 9 * * MON-fri', 'UTC', '2026-11-27 00:00+00', 3);
-- 0 and 7 are both Sunday.
SELECT (SELECT array_agg(t) FROM subexpire_next_runs('0 0 * * 7', 'UTC', '2026-11-27 00:00+00', 3) AS t)
     = (SELECT array_agg(t) FROM subexpire_next_runs('0 0 * * 0', 'UTC', '2026-11-27 00:00+00', 3) AS t) AS same;
-- Both day fields restricted: either matches (Fridays, and the 13th).
SELECT * FROM subexpire_next_runs('0 12 13 * fri', 'UTC', '2026-01-01 00:00+00', 3);
-- One restricted: that one governs (every 10th day of the month from the 1st).
SELECT * FROM subexpire_next_runs('0 0 */10 * *', 'UTC', '2026-01-01 00:00+00', 4);

-- Macros.
SELECT * FROM subexpire_next_runs('@hourly', 'UTC', '2026-01-01 00:30+00', 2);
SELECT * FROM subexpire_next_runs('@daily', 'UTC', '2026-01-01 00:30+00', 1);
SELECT * FROM subexpire_next_runs('@midnight', 'UTC', '2026-01-01 00:30+00', 1);
SELECT * FROM subexpire_next_runs('@weekly', 'UTC', '2026-01-01 00:30+00', 1);
SELECT * FROM subexpire_next_runs('@monthly', 'UTC', '2026-01-01 00:30+00', 1);
SELECT * FROM subexpire_next_runs(' @Yearly ', 'UTC', '2026-01-01 00:30+00', 1);

-- The seconds form: whole multiples of N seconds since the Unix epoch.
SELECT * FROM subexpire_next_runs('15 seconds', NULL, '2026-01-01 00:00:07+00', 3);
SELECT * FROM subexpire_next_runs('1 second', NULL, '2026-01-01 00:00:00+00', 2);
SELECT * FROM subexpire_next_runs('59 seconds', NULL, '2026-01-01 00:00:00+00', 2);

-- Rare and never: a leap day, and a day that does not exist.
SELECT * FROM subexpire_next_runs('0 0 29 2 *', 'UTC', '2026-01-01 00:00+00', 2);
SELECT count(*) AS never FROM subexpire_next_runs('0 0 30 2 *', 'UTC', '2026-01-01 00:00+00', 2);

-- Rarer: 29 February on a Sunday (a day-of-week field that starts with "*"
-- must match as well) comes every 28 years, and 40 across 2100.
SELECT * FROM subexpire_next_runs('0 0 29 2 */7', 'UTC', '2033-01-01 00:00+00', 3);

-- The ends of the range of timestamptz.  On its first day, times after
-- "after" are found, also where the wall clock still reads the day before.
SELECT * FROM subexpire_next_runs('* * * * *', 'UTC', '4714-11-24 00:00:00+00 BC', 2);
SELECT * FROM subexpire_next_runs('0 13 * * *', 'Etc/GMT+12', '4714-11-24 00:00:00+00 BC', 1);
-- The seconds form keeps to its grid up to the last timestamp, and stops there.
SELECT t, extract(epoch FROM t) % 59 AS off_grid
FROM subexpire_next_runs('59 seconds', 'UTC', '294276-12-31 23:57:00+00', 5) AS t;

-- Each time is strictly after the one before.
SELECT count(*) AS times, bool_and(t > lag) AS increasing
FROM (SELECT t, lag(t, 1, '-infinity') OVER (ORDER BY t) FROM
      subexpire_next_runs('*/7 * * * *', 'America/New_York', '2026-11-01 04:00+00', 100) AS t) AS s;

-- Refused, naming the part that is wrong and the accepted forms.
\set VERBOSITY default
SELECT * FROM subexpire_next_runs('61 * * * *');
SELECT * FROM subexpire_next_runs('0 24 * * *');
SELECT * FROM subexpire_next_runs('0 0 0 * *');
SELECT * FROM subexpire_next_runs('0 0 * 13 *');
SELECT * FROM subexpire_next_runs('0 0 * * 8');
SELECT * FROM subexpire_next_runs('0 0 * * fun');
SELECT * FROM subexpire_next_runs('5-1 * * * *');
SELECT * FROM subexpire_next_runs('*/0 * * * *');
SELECT * FROM subexpire_next_runs('1,,2 * * * *');
SELECT * FROM subexpire_next_runs('1, * * * *');
SELECT * FROM subexpire_next_runs('0 2 * *');
SELECT * FROM subexpire_next_runs('0 2 * * * *');
SELECT * FROM subexpire_next_runs('');
SELECT * FROM subexpire_next_runs('@fortnightly');
SELECT * FROM subexpire_next_runs('0 seconds');
SELECT * FROM subexpire_next_runs('60 seconds');
SELECT * FROM subexpire_next_runs('0 2 * * *', 'Mars/Olympus');
-- POSIX zone strings read their sign the other way round from what users
-- mean (UTC+3 is three hours behind UTC): the function refuses them, as
-- the setting does, by the one zone check.
SELECT * FROM subexpire_next_runs('0 2 * * *', 'UTC+3');
SELECT * FROM subexpire_next_runs('0 2 * * *', '+05:00');
ALTER SYSTEM SET subexpire.timezone = 'UTC+3';
ALTER SYSTEM SET subexpire.timezone = '+05:00';
-- A zone name in another case is the same zone.
SELECT * FROM subexpire_next_runs('0 2 * * *', 'europe/berlin', '2026-01-01 00:00+00', 1);
SELECT * FROM subexpire_next_runs('0 2 * * *', 'UTC', 'infinity');
SELECT * FROM subexpire_next_runs('0 2 * * *', 'UTC', now(), -1);

-- The settings refuse the same, and name themselves.
SET subexpire.schedule = '0 3 * * *';
ALTER SYSTEM SET subexpire.schedule = '5-1 * * * *';
ALTER SYSTEM SET subexpire.schedule = 'every day';
ALTER SYSTEM SET subexpire.timezone = 'Nowhere/Special';
ALTER SYSTEM SET subexpire.database = '';
-- subexpire.database is a list: an empty name, a name listed twice, a
-- quote that is not closed or not around a whole name are refused.
ALTER SYSTEM SET subexpire.database = 'shop,,billing';
ALTER SYSTEM SET subexpire.database = 'shop, billing,';
ALTER SYSTEM SET subexpire.database = 'shop, billing, shop';
ALTER SYSTEM SET subexpire.database = 'shop, "billing';
ALTER SYSTEM SET subexpire.database = 'shop, bill"ing';
ALTER SYSTEM SET subexpire.database = '"shop" x';
ALTER SYSTEM SET subexpire.database = '""';
SELECT count(*) AS database_in_file FROM pg_file_settings WHERE name = 'subexpire.database';
-- Names as pg_database spells them (case kept), quoted when they have a
-- comma, a quote or spaces at their ends; the case tells them apart.
ALTER SYSTEM SET subexpire.database = ' shop ,Shop, "Billing, EU", "say ""hi"""';
SELECT setting FROM pg_file_settings WHERE name = 'subexpire.database';
-- One string: the SQL list form would lose the quotes of "Billing, EU".
ALTER SYSTEM SET subexpire.database = shop, billing;
ALTER SYSTEM SET subexpire.database = 'shop, billing';
ALTER SYSTEM SET subexpire.schedule = '*/5 * * * *';
ALTER SYSTEM SET subexpire.timezone = 'Europe/Berlin';
SELECT name, setting FROM pg_file_settings WHERE name LIKE 'subexpire.%' ORDER BY name;
ALTER SYSTEM RESET subexpire.database;
ALTER SYSTEM RESET subexpire.schedule;
ALTER SYSTEM RESET subexpire.timezone;
