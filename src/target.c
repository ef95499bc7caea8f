/*-------------------------------------------------------------------------
 *
 * target.c
 *	  Resolve the target table that the settings describe, and check it
 *	  against the catalog before a run touches it.
 *
 * The settings name a table, three columns and two status words.  Before a
 * run, each is looked up and checked: the table exists and is a table, the
 * columns exist and have types the expiry rule can work with, the words are
 * values the status column can hold, and the caller may update the table.
 * A problem is reported with an error that names the setting at fault and
 * says how to fix it, before anything has changed.  These are a handful of
 * syscache lookups, cheap enough to repeat on every run, so that a table
 * dropped and recreated, or an enum whose labels changed, is never served
 * from a stale description.
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
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/resowner.h"
#include "utils/syscache.h"
#include "utils/varlena.h"

#include "subexpire.h"

#define STATUS_TYPES "text, varchar, char, an enum, or a domain over one of them"
#define TIMESTAMP_TYPES "timestamp with time zone, timestamp or date, or a domain over one of them"

/*
 * The identifier a column setting names, with SQL's quoting rules applied
 * (the check hook has made sure that it parses).
 */
static char *
setting_identifier(const char *value)
{
	char	   *copy = pstrdup(value);
	List	   *parts = NIL;

	if (!SplitIdentifierString(copy, '.', &parts) || list_length(parts) != 1)
		elog(ERROR, "setting value \"%s\" is not an identifier", value);
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
 * Look up the table named by subexpire.target_table and lock it as the
 * statements that follow will, so that it cannot be dropped or altered
 * between this check and the run.
 */
static Oid
lookup_table(bool for_update, char *relkind)
{
	char	   *copy = pstrdup(subexpire_target_table);
	List	   *names = NIL;
	RangeVar   *rv;
	Oid			relid;

	/* The check hook has made sure that the setting is schema.table. */
	if (!SplitIdentifierString(copy, '.', &names) || list_length(names) != 2)
		elog(ERROR, "subexpire.target_table \"%s\" is not a qualified name",
			 subexpire_target_table);
	rv = makeRangeVar(linitial(names), lsecond(names), -1);

	relid = RangeVarGetRelid(rv, for_update ? RowExclusiveLock : AccessShareLock,
							 true);
	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table %s named by subexpire.target_table does not exist",
						subexpire_target_table),
				 errhint("Create the table, or set subexpire.target_table to the schema-qualified name of the subscriptions table.")));

	*relkind = get_rel_relkind(relid);
	if (*relkind != RELKIND_RELATION && *relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("%s named by subexpire.target_table is not a table",
						subexpire_target_table),
				 errdetail("It is %s; subexpire updates rows of a plain or partitioned table.",
						   relkind_description(*relkind)),
				 errhint("Set subexpire.target_table to the table that holds the subscriptions.")));
	return relid;
}

static bool
is_status_type(Oid base_type)
{
	return base_type == TEXTOID || base_type == VARCHAROID ||
		base_type == BPCHAROID || type_is_enum(base_type);
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
	char	   *name = setting_identifier(value);
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
 * Convert a status word from its setting to a value of the status column's
 * type, with that type's own input function, so that an enum label that
 * does not exist, a word too long for a varchar(n), or one that a domain's
 * check refuses, is caught here.  The conversion runs in a subtransaction
 * so that the type's error can be reported as one about the setting.
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
status_word_datum(const SubexpireTarget *target, const char *setting,
				  const char *word, Oid type, int32 typmod)
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
						setting, word, target->status_column,
						target->qualified_name),
				 errdetail("The column's type %s refused it: %s.",
						   format_type_with_typemod(type, typmod),
						   error->message),
				 errhint("Set %s to a status word that the column can hold, or change the column's type.",
						 setting)));
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
 * target or, with for_update, update its status and updated-at columns,
 * with a hint that names the grant to make.  The statements would fail
 * anyway; this says why in the job's terms, before anything has been done.
 */
static void
check_privileges(const SubexpireTarget *target, bool for_update,
				 AttrNumber status_attnum, AttrNumber expires_attnum,
				 AttrNumber updated_attnum)
{
	Oid			role = GetUserId();
	const char *role_name;

	if (may_use_column(target->relid, status_attnum, role, ACL_SELECT) &&
		may_use_column(target->relid, expires_attnum, role, ACL_SELECT) &&
		(!for_update ||
		 (may_use_column(target->relid, status_attnum, role, ACL_UPDATE) &&
		  (updated_attnum == InvalidAttrNumber ||
		   may_use_column(target->relid, updated_attnum, role, ACL_UPDATE)))))
		return;

	role_name = GetUserNameFromId(role, false);
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied to %s subscriptions in table %s",
					for_update ? "expire" : "count due",
					target->qualified_name),
			 errdetail("expire_subscriptions() runs with the rights of its caller, and role \"%s\" may not %s that table.",
					   role_name, for_update ? "read and update" : "read"),
			 errhint("GRANT %s ON %s TO %s;",
					 for_update ? "SELECT, UPDATE" : "SELECT",
					 target->qualified_name, quote_identifier(role_name))));
}

/*
 * The owner of the table named by subexpire.target_table, or InvalidOid
 * when there is no such table.  Work done for someone who is not the
 * caller (the worker running as a superuser, a monitoring role counting due
 * rows) acts as this role, so that code the table's owner controls
 * (triggers, domain checks, type input functions) never runs with more
 * rights than its owner has, as VACUUM does.
 */
Oid
subexpire_target_owner(void)
{
	char	   *copy = pstrdup(subexpire_target_table);
	List	   *names = NIL;
	Oid			relid;
	Oid			owner = InvalidOid;
	HeapTuple	tuple;

	if (!SplitIdentifierString(copy, '.', &names) || list_length(names) != 2)
		return InvalidOid;
	relid = RangeVarGetRelid(makeRangeVar(linitial(names), lsecond(names), -1),
							 NoLock, true);
	if (!OidIsValid(relid))
		return InvalidOid;
	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (HeapTupleIsValid(tuple))
	{
		owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
		ReleaseSysCache(tuple);
	}
	return owner;
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
 * Resolve the target that the settings describe.  With for_update, the
 * table is locked for the UPDATE to come and the caller must be allowed to
 * make it; without, only read (a dry run, or counting due rows).
 */
SubexpireTarget *
subexpire_resolve_target(bool for_update)
{
	SubexpireTarget *target = palloc0(sizeof(SubexpireTarget));
	AttrNumber	status_attnum;
	AttrNumber	expires_attnum;
	AttrNumber	updated_attnum = InvalidAttrNumber;
	Oid			type;
	Oid			base_type;
	int32		status_typmod;
	Oid			collation;

	target->relid = lookup_table(for_update, &target->relkind);
	target->qualified_name = subexpire_relation_name(target->relid);

	target->status_attnum = status_attnum = lookup_column(target, "subexpire.status_column",
														  subexpire_status_column, is_status_type,
														  STATUS_TYPES, &target->status_type,
														  &base_type, &target->status_column);
	target->expires_attnum = expires_attnum = lookup_column(target, "subexpire.expires_column",
															subexpire_expires_column,
															is_timestamp_type, TIMESTAMP_TYPES,
															&type, &target->expires_type,
															&target->expires_column);

	if (subexpire_updated_column[0] != '\0')
	{
		target->updated_attnum = updated_attnum = lookup_column(target, "subexpire.updated_column",
																subexpire_updated_column,
																is_timestamp_type, TIMESTAMP_TYPES,
																&type, &target->updated_type,
																&target->updated_column);
		if (updated_attnum == status_attnum || updated_attnum == expires_attnum)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("subexpire.updated_column names column %s, which is also the status or expiry column",
							target->updated_column),
					 errhint("Set subexpire.updated_column to another column, or to '' to set none.")));
	}

	if (strcmp(subexpire_active_status, subexpire_expired_status) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("subexpire.active_status and subexpire.expired_status are both \"%s\"",
						subexpire_active_status),
				 errhint("Set them to the two different status words that the application uses.")));

	get_atttypetypmodcoll(target->relid, status_attnum, &type,
						  &status_typmod, &collation);
	target->active_word = status_word_datum(target, "subexpire.active_status",
											subexpire_active_status,
											target->status_type,
											status_typmod);
	target->expired_word = status_word_datum(target, "subexpire.expired_status",
											 subexpire_expired_status,
											 target->status_type,
											 status_typmod);

	check_privileges(target, for_update, status_attnum, expires_attnum,
					 updated_attnum);

	return target;
}

/*
 * The columns that name a row of the target in the log: its primary key's,
 * quoted and comma-separated, or "ctid" when it has none.
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
		StringInfoData columns;

		initStringInfo(&columns);
		for (int i = 0; i < index->rd_index->indnkeyatts; i++)
			appendStringInfo(&columns, "%s%s", i > 0 ? ", " : "",
							 quote_identifier(get_attname(target->relid,
														  index->rd_index->indkey.values[i],
														  false)));
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
 */
Datum
subexpire_timestamp_for_column(TimestampTz ts, Oid column_type)
{
	switch (column_type)
	{
		case TIMESTAMPTZOID:
			return TimestampTzGetDatum(ts);
		case TIMESTAMPOID:
			return DirectFunctionCall1(timestamptz_timestamp,
									   TimestampTzGetDatum(ts));
		case DATEOID:
			return DirectFunctionCall1(timestamptz_date,
									   TimestampTzGetDatum(ts));
	}
	elog(ERROR, "unexpected column type %u", column_type);
	return (Datum) 0;			/* keep compiler quiet */
}
