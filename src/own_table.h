/*-------------------------------------------------------------------------
 *
 * own_table.h
 *	  Statements on the extension's own tables, as their owner.
 *
 * IDENTIFICATION
 *	  src/own_table.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef SUBEXPIRE_OWN_TABLE_H
#define SUBEXPIRE_OWN_TABLE_H

#include "storage/lockdefs.h"

/* One of the extension's tables in the current database. */
typedef struct SubexpireOwnTable
{
	Oid			relid;
	const char *relname;		/* unqualified, for messages */
	char	   *name;			/* quoted and qualified, for statements */
	int			sql_version;	/* of the extension's SQL objects */
} SubexpireOwnTable;

extern SubexpireOwnTable subexpire_find_own_table(const char *relname);
extern int	subexpire_execute_on_own_table(const SubexpireOwnTable *table,
										   LOCKMODE lockmode,
										   const char *purpose,
										   const char *sql, int nargs,
										   Oid *types, Datum *values,
										   const char *nulls);

#endif							/* SUBEXPIRE_OWN_TABLE_H */
