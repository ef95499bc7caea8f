/*-------------------------------------------------------------------------
 *
 * extension.h
 *	  The extension's SQL objects in the current database.
 *
 * IDENTIFICATION
 *	  src/extension.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef SUBEXPIRE_EXTENSION_H
#define SUBEXPIRE_EXTENSION_H

/*
 * Versions of the extension's SQL objects (pg_extension.extversion), as
 * numbers that compare as versions do: major * 100 + minor.  The library
 * serves the SQL objects of every version from 1.0 to SUBEXPIRE_SQL_VERSION,
 * its own (subexpire.control's default_version), so that it keeps working
 * between the installation of a new library and ALTER EXTENSION subexpire
 * UPDATE.
 */
#define SUBEXPIRE_SQL_1_0 100
#define SUBEXPIRE_SQL_1_1 101	/* subexpire_runs.longest_batch,
								 * subexpire_stats.last_run_longest_batch */
#define SUBEXPIRE_SQL_1_2 102	/* subexpire_runs.kept_active */
#define SUBEXPIRE_SQL_2_0 200	/* subexpire_rules, subexpire_run_rules */
#define SUBEXPIRE_SQL_VERSION SUBEXPIRE_SQL_2_0
#define SUBEXPIRE_SQL_VERSION_NAME "2.0"

extern Oid	subexpire_extension_schema(char **version);
extern int	subexpire_version_number(const char *version);
extern int	subexpire_sql_version(char **version);

#endif							/* SUBEXPIRE_EXTENSION_H */
