/* sql/subexpire--1.1--1.2.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION subexpire UPDATE TO '1.2'" to load this file. \quit

-- How many due rows a run updated that stayed due, because a BEFORE
-- trigger on the table kept their status: they are not counted in
-- expired_count, the run does not come back for them, and the next run
-- tries them again (src/expire.c).  Added last; pg_dump names the columns
-- of the history it dumps, so an older dump restores into it.
ALTER TABLE subexpire_runs
    ADD COLUMN kept_active bigint NOT NULL DEFAULT 0 CHECK (kept_active >= 0);

COMMENT ON COLUMN subexpire_runs.kept_active IS
    'due rows the run updated that stayed due because a BEFORE trigger on the table kept their status; not counted in expired_count, and tried again by the next run';
