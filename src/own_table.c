/*-------------------------------------------------------------------------
 *
 * own_table.c
 *	  Statements on the extension's own tables (the run history, the
 *	  events outbox), as their owner.
 *
 * Neither the caller of expire_subscriptions() nor a target table's owner
 * is meant to be able to write what the extension keeps: its statements
 * on its own tables run with the rights of the role that owns them (the
 * role that created the extension), as a security-restricted operation,
 * the way PostgreSQL's foreign-key triggers act for a table's owner, with
 * a search_path that the caller cannot have prepared.  They run in the
 * caller's (sub)transaction, so that what they write commits or rolls back
 * with the rows it is about.
 *
 * IDENTIFICATION
 *	  src/own_table.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "executor/spi.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"

#include "extension.h"
#include "owner.h"
#include "own_table.h"
#include "settings.h"
#include "subxact.h"

/*
 * The extension's table relname in this database.  An error, with what to
 * do, when the extension is not installed here or the table is missing.
 */
SubexpireOwnTable
subexpire_find_own_table(const char *relname)
{
	SubexpireOwnTable table;
	char	   *version;
	Oid			schema = subexpire_extension_schema(&version);

	if (!OidIsValid(schema))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("extension \"subexpire\" is not installed in database \"%s\"",
						get_database_name(MyDatabaseId)),
				 errhint("Run CREATE EXTENSION subexpire in this database.")));
	table.relid = get_relname_relid(relname, schema);
	if (!OidIsValid(table.relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table %s of extension subexpire is missing", relname),
				 errhint("Recreate the extension: DROP EXTENSION subexpire; CREATE EXTENSION subexpire;")));
	table.relname = relname;
	table.name = quote_qualified_identifier(get_namespace_name(schema),
											relname);
	table.sql_version = subexpire_version_number(version);
	return table;
}

typedef struct OwnTableLock
{
	Oid			relid;
	LOCKMODE	lockmode;
} OwnTableLock;

static void
lock_step(void *arg)
{
	OwnTableLock *lock = arg;

	LockRelationOid(lock->relid, lock->lockmode);
}

/*
 * Lock the table for a statement on it, waiting no longer than
 * lock_timeout, which every run sets to subexpire.lock_wait: a transaction
 * that holds the extension's table locked must not stall a run that holds
 * its expired rows locked, and its error must say what the run waited for
 * ("purpose": "to record the run", say).
 */
static void
lock_own_table(const SubexpireOwnTable *table, LOCKMODE lockmode,
			   const char *purpose)
{
	OwnTableLock lock = {table->relid, lockmode};
	ErrorData  *error;

	if (ConditionalLockRelationOid(table->relid, lockmode))
		return;
	error = subexpire_try(lock_step, &lock);
	if (error == NULL)
		return;
	if (error->sqlerrcode != ERRCODE_LOCK_NOT_AVAILABLE)
		ReThrowError(error);
	ereport(ERROR,
			(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
			 errmsg("could not lock table %s %s within subexpire.lock_wait (%d ms)",
					table->relname, purpose, subexpire_lock_wait),
			 errdetail("Another transaction holds the table locked; the run's transaction is rolled back."),
			 errhint("Find the holder in pg_locks.  The worker records the run as failed and tries again within a minute.")));
}

/*
 * Execute sql on one of the extension's tables with the rights of its
 * owner, having locked "table" in "lockmode", the statement's own (a
 * statement on subexpire_run_rules locks subexpire_runs, which stands for
 * the whole run history).  Returns SPI's result code.
 */
int
subexpire_execute_on_own_table(const SubexpireOwnTable *table,
							   LOCKMODE lockmode, const char *purpose,
							   const char *sql, int nargs, Oid *types,
							   Datum *values, const char *nulls)
{
	SubexpireSavedUser caller;
	int			guc_level;
	int			rc;

	lock_own_table(table, lockmode, purpose);

	/*
	 * The statements name everything they use; the search_path makes sure
	 * that nothing else could be picked up.
	 */
	subexpire_act_as_owner(subexpire_relation_owner(table->relid), &caller);
	guc_level = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	rc = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);
	AtEOXact_GUC(true, guc_level);
	subexpire_act_as_caller(&caller);
	return rc;
}
