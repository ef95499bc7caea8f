/*-------------------------------------------------------------------------
 *
 * extension.c
 *	  The extension's SQL objects in the current database: whether they are
 *	  installed, in which schema, and at which version.
 *
 * The library may be newer than the SQL objects: a new library is
 * installed and the server restarted, but ALTER EXTENSION subexpire UPDATE
 * has not been run yet in every database.  Whatever depends on SQL
 * objects that a version added asks for the version first and does
 * without them on older ones.
 *
 * IDENTIFICATION
 *	  src/extension.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"

#include "extension.h"

/*
 * The schema the extension was created in, where its tables live, or
 * InvalidOid when it is not installed in this database; with version not
 * NULL, also its pg_extension.extversion, palloc'd (NULL when it is not
 * installed).  (get_extension_schema() is not exported before PostgreSQL
 * 16.)
 */
Oid
subexpire_extension_schema(char **version)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	Oid			schema = InvalidOid;

	if (version != NULL)
		*version = NULL;
	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum("subexpire"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		schema = ((Form_pg_extension) GETSTRUCT(tuple))->extnamespace;
		if (version != NULL)
		{
			bool		isnull;
			Datum		value = heap_getattr(tuple, Anum_pg_extension_extversion,
											 RelationGetDescr(rel), &isnull);

			*version = isnull ? pstrdup("") : TextDatumGetCString(value);
		}
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return schema;
}

/*
 * A version string as a number that compares as versions do
 * (SUBEXPIRE_SQL_1_1 and so on).  A version this library cannot read
 * counts as the oldest, so that only what every version has is used.
 */
int
subexpire_version_number(const char *version)
{
	int			major;
	int			minor;
	char		rest;

	if (sscanf(version, "%d.%d%c", &major, &minor, &rest) != 2 ||
		major < 1 || minor < 0 || minor >= 100)
		return SUBEXPIRE_SQL_1_0;
	return major * 100 + minor;
}

/*
 * The version of the extension's SQL objects in this database, as a
 * number, or 0 when the extension is not installed here; *version is set
 * to the version as pg_extension has it (NULL when not installed).
 */
int
subexpire_sql_version(char **version)
{
	if (!OidIsValid(subexpire_extension_schema(version)))
		return 0;
	return subexpire_version_number(*version);
}
