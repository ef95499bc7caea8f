/*-------------------------------------------------------------------------
 *
 * target.c
 *	  Open the target table of a rule (src/rules.c): check it against the
 *	  catalog before a run touches it, and take on its owner's rights.
 *
 * A rule names a table, three columns, two status words and the other
 * columns it sets.  Before a run, and when a rule is written, each is
 * looked up and checked: the table exists and is a table, the columns
 * exist and have types the rule can work with, the words are two
 * different values that the status column can hold, every value is one
 * its column can hold, every table that holds its rows has its owner, and
 * the caller may update it.  A problem is reported with an error that
 * names the setting, or the rule and its column, at fault and says how to
 * fix it, before anything has changed.  These are a handful of
 * syscache lookups, cheap enough to repeat on every transaction of a run,
 * so that a table dropped and recreated, or an enum whose labels changed,
 * is never served from a stale description.
 *
 * The constraint this module lives under: code that a table's owner can
 * put on the table (triggers, domain checks, type input functions, index
 * expressions, policies) must never run with more rights than the owner
 * has.  So the caller's rights are checked from the catalog alone, and
 * everything after that runs as the owner, in a security-restricted
 * operation, until subexpire_close_target().
 *
 * IDENTIFICATION
 *	  src/target.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/xact.h"
#include "lib/stringinfo.h"
#include "catalog/namespace.h"
#include "catalog/pg_attribute.h"
#include "catalog/pg_class.h"
#include "catalog/pg_constraint.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "miscadmin.h"
#include "executor/spi.h"
#include "nodes/makefuncs.h"
#include "nodes/primnodes.h"
#include "nodes/readfuncs.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/fmgroids.h"
#include "utils/timestamp.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/resowner.h"
#include "utils/rls.h"
#include "utils/syscache.h"
#include "utils/typcache.h"
#include "utils/varlena.h"

#include "owner.h"
#include "settings.h"
#include "subxact.h"
#include "target.h"

#define STATUS_TYPES "text, varchar, char, an enum, boolean, smallint, integer or bigint, or a domain over one of them"
#define TIMESTAMP_TYPES "timestamp with time zone, timestamp or date, or a domain over one of them"

/*
 * The identifier that a column of a rule names, with SQL's quoting rules
 * applied ("field" labels it for the error).
 */
static char *
rule_identifier(const char *field, const char *value)
{
	char	   *copy = pstrdup(value);
	List	   *parts = NIL;

	if (!SplitIdentifierString(copy, '.', &parts) || list_length(parts) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("%s \"%s\" is not a column name", field, value),
				 errhint("Name one column, in double quotes if it needs them: status, or \"Status\".")));
	return (char *) linitial(parts);
}

static const char *
relkind_description(char relkind)
{
	switch (relkind)
	{
		case RELKIND_VIEW:
			return "a view";
		case RELKIND_MATVIEW:
			return "a materialized view";
		case RELKIND_FOREIGN_TABLE:
			return "a foreign table";
		case RELKIND_SEQUENCE:
			return "a sequence";
		case RELKIND_INDEX:
		case RELKIND_PARTITIONED_INDEX:
			return "an index";
		case RELKIND_COMPOSITE_TYPE:
			return "a composite type";
		default:
			return "not a table";
	}
}

/*
 * Look up the table that a rule names and lock it as the
 * statements that follow will, so that it cannot be dropped or altered
 * between this check and the run.  The wait for the lock is bounded by
 * lock_timeout, which subexpire_open_target() has set to
 * subexpire.lock_wait: a transaction that holds the table locked (LOCK
 * TABLE, a long ALTER TABLE) must not stall the run, and the scheduler
 * behind it, for as long as it likes.
 */
typedef struct TableLookup
{
	RangeVar   *rv;
	LOCKMODE	lockmode;
	Oid			relid;
} TableLookup;

static void
lookup_table_step(void *arg)
{
	TableLookup *lookup = arg;

	lookup->relid = RangeVarGetRelid(lookup->rv, lookup->lockmode, true);
}

static Oid
lookup_table(const SubexpireRule *rule, LOCKMODE lockmode)
{
	char	   *field = subexpire_rule_field(rule, "target_table");
	char	   *copy = pstrdup(rule->target_table);
	List	   *names = NIL;
	TableLookup lookup;
	ErrorData  *error;
	char		relkind;

	if (!SplitIdentifierString(copy, '.', &names) || list_length(names) != 2)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("%s \"%s\" is not a schema-qualified table name",
						field, rule->target_table),
				 errhint("Name the table with its schema, in double quotes where SQL needs them: public.subscriptions.")));
	lookup.rv = makeRangeVar(linitial(names), lsecond(names), -1);
	lookup.lockmode = lockmode;
	lookup.relid = InvalidOid;

	error = subexpire_try(lookup_table_step, &lookup);
	if (error != NULL)
	{
		if (error->sqlerrcode != ERRCODE_LOCK_NOT_AVAILABLE)
			ReThrowError(error);
		ereport(ERROR,
				(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
				 errmsg("could not lock table %s named by %s within subexpire.lock_wait (%d ms)",
						rule->target_table, field, subexpire_lock_wait),
				 errdetail("Another transaction holds a lock on the table that conflicts with the run's; nothing was changed."),
				 errhint("Find the holder in pg_locks.  The worker records the run as failed and tries again within a minute.")));
	}
	if (!OidIsValid(lookup.relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table %s named by %s does not exist",
						rule->target_table, field),
				 errhint("Create the table, or set %s to the schema-qualified name of the subscriptions table.",
						 field)));

	relkind = get_rel_relkind(lookup.relid);
	if (relkind != RELKIND_RELATION && relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("%s named by %s is not a table",
						rule->target_table, field),
				 errdetail("It is %s; subexpire updates rows of a plain or partitioned table.",
						   relkind_description(relkind)),
				 errhint("Set %s to the table that holds the subscriptions.",
						 field)));
	return lookup.relid;
}

/*
 * A status column holds a word, a flag or a code: a type whose values
 * btree compares, as the due condition and an index on it do, and whose
 * values are written as words.
 */
static bool
is_status_type(Oid base_type)
{
	switch (base_type)
	{
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
		case BOOLOID:
		case INT2OID:
		case INT4OID:
		case INT8OID:
			return true;
		default:
			return type_is_enum(base_type);
	}
}

static bool
is_timestamp_type(Oid base_type)
{
	return base_type == TIMESTAMPTZOID || base_type == TIMESTAMPOID ||
		base_type == DATEOID;
}

/*
 * Find the column that a setting names and check that its type is one that
 * type_ok accepts (types_accepted says which, for the error).  Returns its
 * number, its type and base type (they differ for a domain), and its
 * quoted name.
 */
static AttrNumber
lookup_column(const SubexpireTarget *target, const char *setting,
			  const char *value, bool (*type_ok) (Oid),
			  const char *types_accepted,
			  Oid *type, Oid *base_type, char **quoted)
{
	char	   *name = rule_identifier(setting, value);
	AttrNumber	attnum = get_attnum(target->relid, name);
	int32		typmod;
	Oid			collation;

	if (attnum <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" named by %s does not exist in table %s",
						name, setting, target->qualified_name),
				 errhint("Set %s to the name of an existing column of %s.",
						 setting, target->qualified_name)));

	get_atttypetypmodcoll(target->relid, attnum, type, &typmod, &collation);
	*base_type = getBaseType(*type);
	if (!type_ok(*base_type))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("column \"%s\" named by %s has type %s",
						name, setting, format_type_be(*type)),
				 errdetail("The column must be of type %s.", types_accepted),
				 errhint("Set %s to a column of one of those types in %s.",
						 setting, target->qualified_name)));

	*quoted = pstrdup(quote_identifier(name));
	return attnum;
}

/*
 * Convert a status word, or a value of set_columns, to a value of its
 * column's type, with that type's own input function, so that an enum
 * label that does not exist, a word too long for a varchar(n), 'yes' for
 * an integer code, or one that a domain's check refuses, is caught here.
 * The conversion runs in a subtransaction so that the type's error can be
 * reported as one about the rule.
 */
typedef struct WordInput
{
	Oid			input_function;
	Oid			io_param;
	int32		typmod;
	const char *word;
	Datum		result;
} WordInput;

static void
convert_word(void *arg)
{
	WordInput  *input = arg;

	input->result = OidInputFunctionCall(input->input_function,
										 (char *) input->word,
										 input->io_param, input->typmod);
}

static Datum
column_value_datum(const SubexpireTarget *target, const char *setting,
				   const char *word, const char *column, Oid type,
				   int32 typmod, const char *what)
{
	WordInput	input;
	ErrorData  *error;

	getTypeInputInfo(type, &input.input_function, &input.io_param);
	input.typmod = typmod;
	input.word = word;
	error = subexpire_try(convert_word, &input);
	if (error != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s \"%s\" is not a value that column %s of %s can hold",
						setting, word, column, target->qualified_name),
				 errdetail("The column's type %s refused it: %s.",
						   format_type_with_typemod(type, typmod),
						   error->message),
				 errhint("Set %s to %s that the column can hold, or change the column's type.",
						 setting, what)));
	return input.result;
}

static bool
may_use_column(Oid relid, AttrNumber attnum, Oid role, AclMode mode)
{
	return pg_class_aclcheck(relid, role, mode) == ACLCHECK_OK ||
		pg_attribute_aclcheck(relid, attnum, role, mode) == ACLCHECK_OK;
}

/*
 * Refuse a caller who may not read the status and expiry columns of the
 * target or, for a run, update its status and updated-at columns, with a
 * hint that names the grant to make; and one whom row-level security
 * restricts on the table, since the statements run as the table's owner
 * and would touch rows that the caller's policies hide.  Only catalog
 * lookups: no code of the table's owner runs as the caller here.
 */
static bool
may_update_columns(const SubexpireTarget *target, Oid role)
{
	if (!may_use_column(target->relid, target->status_attnum, role, ACL_UPDATE) ||
		(target->updated_attnum != InvalidAttrNumber &&
		 !may_use_column(target->relid, target->updated_attnum, role, ACL_UPDATE)))
		return false;
	for (int i = 0; i < target->nset; i++)
		if (!may_use_column(target->relid, target->set_attnums[i], role, ACL_UPDATE))
			return false;
	return true;
}

/*
 * "who" says in the error whose rights were checked: the caller of
 * expire_subscriptions(), the writer of a rule, the worker's role.
 */
static void
check_privileges(const SubexpireTarget *target, bool for_update, Oid role,
				 const char *who)
{
	const char *role_name;

	if (!may_use_column(target->relid, target->status_attnum, role, ACL_SELECT) ||
		!may_use_column(target->relid, target->expires_attnum, role, ACL_SELECT) ||
		(for_update && !may_update_columns(target, role)))
	{
		role_name = GetUserNameFromId(role, false);
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to %s subscriptions in table %s",
						for_update ? "expire" : "count due",
						target->qualified_name),
				 errdetail("%s needs the rights to %s that table, and role \"%s\" does not have them.",
						   who, for_update ? "read and update" : "read", role_name),
				 errhint("GRANT %s ON %s TO %s;",
						 for_update ? "SELECT, UPDATE" : "SELECT",
						 target->qualified_name, quote_identifier(role_name))));
	}

	if (check_enable_rls(target->relid, role, true) == RLS_ENABLED)
	{
		role_name = GetUserNameFromId(role, false);
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("row-level security on table %s applies to role \"%s\"",
						target->qualified_name, role_name),
				 errdetail("A run reads and expires every due row as the table's owner, including rows that the policies hide from role \"%s\".",
						   role_name),
				 errhint("Call expire_subscriptions() as the table's owner or as a role with BYPASSRLS.")));
	}
}

/*
 * Check the tables that hold the target's rows (the table itself, its
 * partitions or inheritance children), and note what the run needs to know
 * of them.
 *
 * - Each must be owned by the target's owner: the run acts as that role,
 *   and a child's triggers would otherwise run with the rights of another
 *   role than the child's owner, a superuser's included.
 * - None may be a foreign table: its rows can be neither locked nor
 *   counted the same way on every path, so every path refuses it.
 * - None may have rules on UPDATE: a rule replaces the run's UPDATE by
 *   statements whose effect the run can neither count nor bound.
 * - BEFORE ROW triggers on UPDATE or INSERT (the latter for rows moved to
 *   another partition) can change the row that is written: the run then
 *   counts each row by the status it was given, not by the rows the
 *   UPDATE processed (target->count_outcome).
 * - Deferrable constraint triggers are collected, to be made immediate
 *   for the run (see make_constraints_immediate()).
 */
static List *
check_tables(SubexpireTarget *target, LOCKMODE lockmode)
{
	List	   *relids = find_all_inheritors(target->relid, lockmode, NULL);
	List	   *deferrable = NIL;
	ListCell   *lc;

	foreach(lc, relids)
	{
		Oid			relid = lfirst_oid(lc);
		Relation	rel = table_open(relid, NoLock);
		TriggerDesc *triggers = rel->trigdesc;

		if (rel->rd_rel->relowner != target->owner)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("%s %s of %s is owned by role \"%s\", not by the table's owner \"%s\"",
							rel->rd_rel->relispartition ? "partition" : "child table",
							subexpire_relation_name(relid), target->qualified_name,
							GetUserNameFromId(rel->rd_rel->relowner, false),
							GetUserNameFromId(target->owner, false)),
					 errdetail("A run acts as the owner of the table it expires rows in, so that the code on a table never runs with more rights than its owner has; every table that holds the subscriptions must have the same owner."),
					 errhint("ALTER TABLE %s OWNER TO %s;",
							 subexpire_relation_name(relid),
							 quote_identifier(GetUserNameFromId(target->owner, false)))));
		if (rel->rd_rel->relkind == RELKIND_FOREIGN_TABLE)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot expire subscriptions in foreign table %s, a partition of %s",
							subexpire_relation_name(relid), target->qualified_name),
					 errdetail("Rows of a foreign table can be neither locked nor counted as the run needs; every run refuses such a partition."),
					 errhint("Expire them on the server that holds them, and detach the foreign partition from the table that %s names.",
							 subexpire_rule_field(target->rule, "target_table"))));
		if (rel->rd_rules != NULL)
		{
			for (int i = 0; i < rel->rd_rules->numLocks; i++)
				if (rel->rd_rules->rules[i]->event == CMD_UPDATE)
					ereport(ERROR,
							(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
							 errmsg("cannot expire subscriptions in table %s: it has a rule on UPDATE",
									subexpire_relation_name(relid)),
							 errdetail("A rule replaces the run's UPDATE with other statements, whose effect the run can neither count nor bound."),
							 errhint("Replace the rule with a trigger.")));
		}
		if (triggers != NULL)
		{
			if (triggers->trig_update_before_row || triggers->trig_insert_before_row)
				target->count_outcome = true;
			for (int i = 0; i < triggers->numtriggers; i++)
				if (triggers->triggers[i].tgdeferrable &&
					OidIsValid(triggers->triggers[i].tgconstraint))
					deferrable = list_append_unique_oid(deferrable,
														triggers->triggers[i].tgconstraint);
		}
		table_close(rel, NoLock);
	}
	return deferrable;
}

/*
 * Make the deferrable constraints of the target's tables immediate, so that
 * their triggers fire at the end of each of the run's statements, as the
 * table's owner.  PostgreSQL refuses to queue a deferred trigger inside a
 * security-restricted operation, since it would fire at commit, outside of
 * it, with the rights of whoever commits.  Done as the caller, before the
 * switch to the owner: whatever the caller's own statements queued for
 * those constraints fires now, with the caller's rights, as it would have
 * at commit.  In a manual call, they stay immediate for the rest of the
 * caller's transaction, as after SET CONSTRAINTS.
 */
static void
make_constraints_immediate(List *constraints)
{
	ConstraintsSetStmt *stmt;
	ListCell   *lc;

	if (constraints == NIL)
		return;
	stmt = makeNode(ConstraintsSetStmt);
	stmt->deferred = false;
	foreach(lc, constraints)
	{
		HeapTuple	tuple = SearchSysCache1(CONSTROID,
											ObjectIdGetDatum(lfirst_oid(lc)));
		Form_pg_constraint con;

		if (!HeapTupleIsValid(tuple))
			elog(ERROR, "cache lookup failed for constraint %u", lfirst_oid(lc));
		con = (Form_pg_constraint) GETSTRUCT(tuple);
		stmt->constraints = lappend(stmt->constraints,
									makeRangeVar(get_namespace_name(con->connamespace),
												 pstrdup(NameStr(con->conname)), -1));
		ReleaseSysCache(tuple);
	}
	AfterTriggerSetState(stmt);
}

/*
 * Refuse status words that are the same value of the status column: the
 * column type's equality and the column's collation decide, as they do in
 * the statements ('active' and 'active ' in a char(10) column, 'ACTIVE'
 * and 'active' under a case-insensitive collation).  A run with such words
 * would "expire" rows that stay due.
 */
static void
check_words_differ(const SubexpireTarget *target, Oid collation)
{
	const SubexpireRule *rule = target->rule;
	TypeCacheEntry *type = lookup_type_cache(getBaseType(target->status_type),
											 TYPECACHE_EQ_OPR_FINFO);

	if (!OidIsValid(type->eq_opr_finfo.fn_oid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("type %s of column %s has no equality operator",
						format_type_be(target->status_type), target->status_column),
				 errhint("Set %s to a column of type %s.",
						 subexpire_rule_field(rule, "status_column"),
						 STATUS_TYPES)));
	if (DatumGetBool(FunctionCall2Coll(&type->eq_opr_finfo, collation,
									   target->active_word,
									   target->expired_word)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s \"%s\" and %s \"%s\" are the same value of column %s of %s",
						subexpire_rule_field(rule, "from_status"),
						rule->from_status,
						subexpire_rule_field(rule, "to_status"),
						rule->to_status,
						target->status_column, target->qualified_name),
				 errdetail("The column's type %s and collation compare them as equal, so a run would leave every row it expires due.",
						   format_type_be(target->status_type)),
				 rule->from_settings
				 ? errhint("Set the two settings to status words that the column tells apart.")
				 : errhint("Set from_status and to_status of rule \"%s\" to status words that the column tells apart.",
						   rule->name)));
}

/*
 * Is the target a Citus hash-distributed table, and by which column?
 * Citus keeps its tables in pg_dist_partition, with the distribution
 * column as a Var in nodeToString() form; without Citus there is no such
 * catalog, and no table is distributed.
 */
static void
find_distribution(SubexpireTarget *target)
{
	Oid			catalog = get_relname_relid("pg_dist_partition",
											PG_CATALOG_NAMESPACE);
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;

	if (!OidIsValid(catalog))
		return;
	rel = table_open(catalog, AccessShareLock);
	ScanKeyInit(&key, get_attnum(catalog, "logicalrelid"),
				BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(target->relid));
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		TupleDesc	desc = RelationGetDescr(rel);
		bool		isnull;
		Datum		method = heap_getattr(tuple, get_attnum(catalog, "partmethod"),
										  desc, &isnull);
		Datum		partkey = heap_getattr(tuple, get_attnum(catalog, "partkey"),
										   desc, &isnull);

		if (DatumGetChar(method) == 'h' && !isnull)
		{
			Node	   *column = stringToNode(TextDatumGetCString(partkey));

			if (!IsA(column, Var))
				elog(ERROR, "distribution column of %s is not a column",
					 target->qualified_name);
			target->distributed = true;
			target->key_attnum = ((Var *) column)->varattno;
			target->key_type = get_atttype(target->relid, target->key_attnum);
			target->key_column = pstrdup(quote_identifier(get_attname(target->relid,
																	  target->key_attnum,
																	  false)));
		}
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
}

/*
 * Set lock_timeout on the shards of a distributed table, for the rest of
 * the current (sub)transaction.  Citus does not pass the coordinator's
 * settings on to the workers; it propagates a SET LOCAL, when
 * citus.propagate_set_commands is 'local' (subexpire_open_target() sets
 * it), and only inside a transaction block, a procedure or a DO block:
 * hence the DO block.
 */
static void
set_remote_lock_timeout(const char *value)
{
	char	   *sql = psprintf("DO $subexpire$ BEGIN SET LOCAL lock_timeout = %s; END $subexpire$",
							   quote_literal_cstr(value));

	if (SPI_execute(sql, false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "setting lock_timeout on the shards failed");
	pfree(sql);
}

/*
 * Bound the lock waits of the statements that follow in the current GUC
 * nest level (or (sub)transaction) to timeout_ms: lock_timeout here, and on
 * a distributed table also on its shards, where the rows are locked.
 */
void
subexpire_set_lock_wait(SubexpireTarget *target, int timeout_ms)
{
	char		value[32];

	snprintf(value, sizeof(value), "%d", timeout_ms);
	(void) set_config_option("lock_timeout", value, PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	if (target->distributed)
	{
		set_remote_lock_timeout(value);
		target->remote_lock_wait = true;
	}
}

/*
 * Bound every lock wait that follows to subexpire.lock_wait, in a new GUC
 * nest level, whose number it returns: the caller ends it with
 * AtEOXact_GUC(true, level) to give the caller's lock_timeout back (an
 * error gives it back by itself).
 */
int
subexpire_bound_lock_waits(void)
{
	int			level = NewGUCNestLevel();
	char		timeout[32];

	snprintf(timeout, sizeof(timeout), "%d", subexpire_lock_wait);
	(void) set_config_option("lock_timeout", timeout, PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	return level;
}

/*
 * The schema-qualified, quoted name of a relation, to put in a statement;
 * NULL when the relation is gone.
 */
char *
subexpire_relation_name(Oid relid)
{
	char	   *relname = get_rel_name(relid);

	if (relname == NULL)
		return NULL;
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
									  relname);
}

/*
 * The columns that a rule sets besides its status (set_columns): each must
 * exist, be neither the status nor the updated-at column, and be one that
 * an UPDATE may set.  Their values are converted later, as the owner.
 */
static void
lookup_set_columns(SubexpireTarget *target)
{
	const SubexpireRule *rule = target->rule;
	char	   *field = subexpire_rule_field(rule, "set_columns");
	int			n = list_length(rule->set_columns);
	ListCell   *lc;

	if (n > SUBEXPIRE_MAX_SET_COLUMNS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s names %d columns, more than %d",
						field, n, SUBEXPIRE_MAX_SET_COLUMNS),
				 errhint("Set the other columns with a trigger on the table.")));
	target->set_attnums = palloc0(Max(n, 1) * sizeof(AttrNumber));
	target->set_names = palloc0(Max(n, 1) * sizeof(char *));
	target->set_types = palloc0(Max(n, 1) * sizeof(Oid));
	target->set_values = palloc0(Max(n, 1) * sizeof(Datum));
	target->set_nulls = palloc0(Max(n, 1) * sizeof(bool));
	foreach(lc, rule->set_columns)
	{
		SubexpireSetColumn *column = lfirst(lc);
		AttrNumber	attnum = get_attnum(target->relid, column->name);
		HeapTuple	tuple;
		Form_pg_attribute att;
		const char *refusal = NULL;

		if (attnum <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"%s\" named by %s does not exist in table %s",
							column->name, field, target->qualified_name),
					 errhint("Name the columns exactly as the table has them (the names in set_columns are not folded to lower case).")));
		tuple = SearchSysCache2(ATTNUM, ObjectIdGetDatum(target->relid),
								Int16GetDatum(attnum));
		if (!HeapTupleIsValid(tuple))
			elog(ERROR, "cache lookup failed for column %d of %u", attnum,
				 target->relid);
		att = (Form_pg_attribute) GETSTRUCT(tuple);
		if (attnum == target->status_attnum)
			refusal = "it is the rule's status column, which to_status sets";
		else if (attnum == target->updated_attnum)
			refusal = "it is the rule's updated-at column, which the run sets to its time";
		else if (attnum == target->expires_attnum && rule->emit_events)
			refusal = "it is the rule's expiry column, and the rule's events report each row's expiry as it was";
		else if (att->attgenerated != '\0')
			refusal = "it is a generated column";
		else if (att->attidentity == ATTRIBUTE_IDENTITY_ALWAYS)
			refusal = "it is an identity column GENERATED ALWAYS";
		else if (target->distributed && attnum == target->key_attnum)
			refusal = "it is the table's distribution column, which Citus does not let an UPDATE change";
		else if (att->attnotnull && column->value == NULL)
			refusal = "it is NOT NULL, and the value given is null";
		if (refusal != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s cannot set column \"%s\" of %s: %s",
							field, column->name, target->qualified_name,
							refusal),
					 errhint("Remove \"%s\" from set_columns.", column->name)));
		target->set_attnums[target->nset] = attnum;
		target->set_names[target->nset] = pstrdup(quote_identifier(column->name));
		target->set_types[target->nset] = att->atttypid;
		target->nset++;
		ReleaseSysCache(tuple);
	}
}

/* A rule that emits events names each row by its primary key. */
static void
check_event_key(SubexpireTarget *target)
{
	const SubexpireRule *rule = target->rule;

	if (!rule->emit_events)
		return;
	(void) subexpire_key_columns(target);
	if (target->nkeys == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
				 errmsg("%s needs a primary key on table %s",
						subexpire_rule_field(rule, "emit_events"),
						target->qualified_name),
				 errdetail("An event names the row it is about by its primary key."),
				 errhint("Add a primary key to %s, or set emit_events to false.",
						 target->qualified_name)));
}

/* The values of set_columns, as values of their columns' types. */
static void
convert_set_values(SubexpireTarget *target)
{
	char	   *field = subexpire_rule_field(target->rule, "set_columns");
	int			i = 0;
	ListCell   *lc;

	foreach(lc, target->rule->set_columns)
	{
		SubexpireSetColumn *column = lfirst(lc);
		Oid			type;
		int32		typmod;
		Oid			collation;

		get_atttypetypmodcoll(target->relid, target->set_attnums[i], &type,
							  &typmod, &collation);

		target->set_nulls[i] = (column->value == NULL);
		if (column->value != NULL)
			target->set_values[i] = column_value_datum(target, field,
													   column->value,
													   target->set_names[i],
													   target->set_types[i],
													   typmod, "a value");
		i++;
	}
}

/*
 * A rule may make the worker update a table only if the worker's role may
 * update it itself (subexpire.role; the bootstrap superuser by default).
 */
static void
check_worker_role(const SubexpireTarget *target)
{
	Oid			role;

	if (subexpire_role[0] == '\0')
		return;
	role = get_role_oid(subexpire_role, true);
	if (OidIsValid(role))
		check_privileges(target, true, role,
						 "The worker's role, subexpire.role,");
}

/*
 * Open the target of a rule, for a run, a count by the caller (a dry run),
 * monitoring (which needs no access to the rows), or the check of a rule
 * being written.
 *
 * The table is locked for what follows, waiting at most subexpire.lock_wait
 * (lock_timeout stays set to it until subexpire_close_target(), so that
 * every lock wait of the statements that follow is bounded too), and
 * checked against the catalog; the caller's rights are checked as the
 * caller, before anything else runs.  Then the current user becomes the
 * table's owner, in a security-restricted operation, as VACUUM and
 * ANALYZE do: every statement on the target from here on, and the
 * conversion of the rule's words and values to the columns' types that
 * follows at once, runs with the rights of the role that owns the code on
 * the table (triggers, domain checks, type input functions, index
 * expressions, policies), and never with the caller's, a superuser's
 * included.
 *
 * The caller must call subexpire_close_target() before its transaction or
 * subtransaction ends normally; an error restores the caller's rights and
 * settings by itself.
 */
SubexpireTarget *
subexpire_open_target(const SubexpireRule *rule, SubexpireAccess access)
{
	SubexpireTarget *target = palloc0(sizeof(SubexpireTarget));
	LOCKMODE	lockmode = (access == SUBEXPIRE_FOR_RUN) ? RowExclusiveLock : AccessShareLock;
	Oid			caller = GetUserId();
	Oid			type;
	Oid			base_type;
	int32		status_typmod;
	Oid			collation;
	List	   *deferrable;

	target->rule = rule;
	target->caller_lock_timeout = pstrdup(GetConfigOption("lock_timeout",
														  false, false));
	target->guc_level = subexpire_bound_lock_waits();

	target->relid = lookup_table(rule, lockmode);
	target->qualified_name = subexpire_relation_name(target->relid);
	target->owner = subexpire_relation_owner(target->relid);
	find_distribution(target);
	if (target->distributed)
		(void) set_config_option("citus.propagate_set_commands", "local",
								 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
								 true, 0, false);

	target->status_attnum = lookup_column(target,
										  subexpire_rule_field(rule, "status_column"),
										  rule->status_column, is_status_type,
										  STATUS_TYPES, &target->status_type,
										  &base_type, &target->status_column);
	target->expires_attnum = lookup_column(target,
										   subexpire_rule_field(rule, "expires_column"),
										   rule->expires_column,
										   is_timestamp_type, TIMESTAMP_TYPES,
										   &type, &target->expires_type,
										   &target->expires_column);

	if (rule->updated_column != NULL)
	{
		char	   *field = subexpire_rule_field(rule, "updated_column");

		target->updated_attnum = lookup_column(target, field,
											   rule->updated_column,
											   is_timestamp_type, TIMESTAMP_TYPES,
											   &type, &target->updated_type,
											   &target->updated_column);
		if (target->updated_attnum == target->status_attnum ||
			target->updated_attnum == target->expires_attnum)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s names column %s, which is also the status or expiry column",
							field, target->updated_column),
					 errhint("Set %s to another column, or to %s to set none.",
							 field, rule->from_settings ? "''" : "NULL")));
	}
	lookup_set_columns(target);
	if (access == SUBEXPIRE_FOR_RUN || access == SUBEXPIRE_FOR_CHECK)
		check_event_key(target);

	if (access == SUBEXPIRE_FOR_CHECK)
	{
		check_privileges(target, true, caller, "The writer of a rule");
		check_worker_role(target);
	}
	else if (access != SUBEXPIRE_FOR_MONITOR)
		check_privileges(target, access == SUBEXPIRE_FOR_RUN, caller,
						 "The caller of expire_subscriptions()");
	deferrable = check_tables(target, lockmode);
	if (access == SUBEXPIRE_FOR_RUN)
		make_constraints_immediate(deferrable);

	/* From here on, as the table's owner. */
	subexpire_act_as_owner(target->owner, &target->caller);

	get_atttypetypmodcoll(target->relid, target->status_attnum, &type,
						  &status_typmod, &collation);
	target->active_word = column_value_datum(target,
											 subexpire_rule_field(rule, "from_status"),
											 rule->from_status,
											 target->status_column,
											 target->status_type,
											 status_typmod, "a status word");
	target->expired_word = column_value_datum(target,
											  subexpire_rule_field(rule, "to_status"),
											  rule->to_status,
											  target->status_column,
											  target->status_type,
											  status_typmod, "a status word");
	check_words_differ(target, collation);
	convert_set_values(target);

	return target;
}

/* Give back the caller's rights and lock_timeout (the shards' too). */
void
subexpire_close_target(SubexpireTarget *target)
{
	if (target->remote_lock_wait)
		set_remote_lock_timeout(target->caller_lock_timeout);
	subexpire_act_as_caller(&target->caller);
	AtEOXact_GUC(true, target->guc_level);
}

/*
 * The columns that name a row of the target, in the log and in its
 * events: its primary key's, quoted and comma-separated, or "ctid" when it
 * has none.  Also sets target->nkeys and the key columns' names and types,
 * which an event's row_key is made of (none without a primary key).
 */
const char *
subexpire_key_columns(SubexpireTarget *target)
{
	Relation	rel;
	Oid			pk;

	if (target->key_columns != NULL)
		return target->key_columns;

	rel = table_open(target->relid, AccessShareLock);
	pk = RelationGetPrimaryKeyIndex(rel);
	if (OidIsValid(pk))
	{
		Relation	index = index_open(pk, AccessShareLock);
		int			nkeys = index->rd_index->indnkeyatts;
		StringInfoData columns;

		initStringInfo(&columns);
		target->key_names = palloc(nkeys * sizeof(char *));
		target->key_types = palloc(nkeys * sizeof(Oid));
		for (int i = 0; i < nkeys; i++)
		{
			AttrNumber	attnum = index->rd_index->indkey.values[i];

			target->key_names[i] = get_attname(target->relid, attnum, false);
			target->key_types[i] = get_atttype(target->relid, attnum);
			appendStringInfo(&columns, "%s%s", i > 0 ? ", " : "",
							 quote_identifier(target->key_names[i]));
		}
		target->nkeys = nkeys;
		index_close(index, AccessShareLock);
		target->key_columns = columns.data;
	}
	else
		target->key_columns = "ctid";
	table_close(rel, AccessShareLock);
	return target->key_columns;
}

/*
 * A point in time as a value of a timestamp-like column's type.  A
 * timestamp without time zone or a date is read in the session's TimeZone,
 * as PostgreSQL's own casts do, so that the comparison is one of like
 * types: an index on the column serves it, and no per-row conversion runs.
 * "what" names the time (as_of, say) and "column" the column, for the
 * error when the time has no value in the column's type: the ends of the
 * timestamp range differ by a zone's offset between the types.
 */
Datum
subexpire_timestamp_for_column(TimestampTz ts, Oid column_type,
							   const char *what, const char *column)
{
	struct pg_tm tm;
	fsec_t		fsec;
	int			tz;
	Timestamp	local;

	if (column_type == TIMESTAMPTZOID)
		return TimestampTzGetDatum(ts);
	if (column_type != TIMESTAMPOID && column_type != DATEOID)
		elog(ERROR, "unexpected column type %u", column_type);

	if (timestamp2tm(ts, &tz, &tm, &fsec, NULL, NULL) != 0 ||
		tm2timestamp(&tm, fsec, NULL, &local) != 0 ||
		!IS_VALID_TIMESTAMP(local))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("%s %s is out of the range of type %s of column %s",
						what, timestamptz_to_str(ts),
						format_type_be(column_type), column),
				 errhint("Pass an as_of within the range of the column's type.")));
	if (column_type == TIMESTAMPOID)
		return TimestampGetDatum(local);
	return DirectFunctionCall1(timestamptz_date, TimestampTzGetDatum(ts));
}
