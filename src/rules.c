/*-------------------------------------------------------------------------
 *
 * rules.c
 *	  The lifecycle rules a run makes, in the order it makes them: the
 *	  enabled rows of subexpire_rules, or, when there is none, the one rule
 *	  that the subexpire.* target settings describe, named 'default'.
 *
 * A rule is read as written, as text: its table, columns and words are
 * checked against the catalog, and converted to the columns' types, when
 * its target is opened (src/target.c), on every run and when the row is
 * written (src/rule_check.c).  So a rule whose table was dropped or
 * altered since it was written fails with an error that names it, and a
 * rule always means what the catalog says now.
 *
 * The rules are read with a plain scan of the table, as configuration is,
 * not with the caller's rights: the caller of expire_subscriptions() needs
 * rights on the rules' tables, not on the table that lists them.
 *
 * IDENTIFICATION
 *	  src/rules.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/heapam.h"
#include "access/tableam.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "extension.h"
#include "rules.h"
#include "settings.h"
#include "subxact.h"

#define RULES_TABLE "subexpire_rules"

/* The rule that the 1.x settings describe. */
static SubexpireRule *
settings_rule(void)
{
	SubexpireRule *rule = palloc0(sizeof(SubexpireRule));

	rule->name = SUBEXPIRE_DEFAULT_RULE;
	rule->from_settings = true;
	rule->target_table = subexpire_target_table;
	rule->status_column = subexpire_status_column;
	rule->from_status = subexpire_active_status;
	rule->to_status = subexpire_expired_status;
	rule->expires_column = subexpire_expires_column;
	rule->grace_period.time = (int64) subexpire_grace_period * USECS_PER_SEC;
	rule->updated_column = subexpire_updated_column[0] != '\0'
		? subexpire_updated_column : NULL;
	rule->run_order = 0;
	rule->enabled = true;
	/* subexpire.max_expired_per_run bounds the run, and so this rule. */
	return rule;
}

/*
 * The label of a rule's column in an error: the setting for the rule of
 * the settings, the column of subexpire_rules and the rule's name for the
 * others.
 */
char *
subexpire_rule_field(const SubexpireRule *rule, const char *column)
{
	static const struct
	{
		const char *column;
		const char *setting;
	}			settings[] =
	{
		{"target_table", "subexpire.target_table"},
		{"status_column", "subexpire.status_column"},
		{"from_status", "subexpire.active_status"},
		{"to_status", "subexpire.expired_status"},
		{"expires_column", "subexpire.expires_column"},
		{"updated_column", "subexpire.updated_column"},
		{"grace_period", "subexpire.grace_period"},
	};

	if (rule->from_settings)
	{
		for (int i = 0; i < lengthof(settings); i++)
			if (strcmp(settings[i].column, column) == 0)
				return pstrdup(settings[i].setting);
	}
	return psprintf("%s of rule \"%s\"", column, rule->name);
}

/* The text of a JSON scalar, as input for a column's type; NULL for null. */
static char *
json_scalar_text(const SubexpireRule *rule, const char *column,
				 JsonbValue *value)
{
	switch (value->type)
	{
		case jbvNull:
			return NULL;
		case jbvString:
			return pnstrdup(value->val.string.val, value->val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out,
													   NumericGetDatum(value->val.numeric)));
		case jbvBool:
			return pstrdup(value->val.boolean ? "true" : "false");
		default:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("value of column \"%s\" in %s is not a JSON string, number, boolean or null",
							column, subexpire_rule_field(rule, "set_columns")),
					 errhint("Give each column one value, as you would write it in SQL: {\"plan\": \"free\", \"seats\": 1, \"trial_ends_at\": null}.")));
	}
	return NULL;				/* keep the compiler quiet */
}

/* set_columns, {"column": value, ...}, as a list of SubexpireSetColumn. */
static List *
read_set_columns(const SubexpireRule *rule, Jsonb *object)
{
	JsonbIterator *it;
	JsonbValue	value;
	JsonbIteratorToken token;
	List	   *columns = NIL;
	SubexpireSetColumn *column = NULL;

	if (!JB_ROOT_IS_OBJECT(object))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is not a JSON object",
						subexpire_rule_field(rule, "set_columns")),
				 errhint("Name each column to set with its value: {\"plan\": \"free\"}.")));

	it = JsonbIteratorInit(&object->root);
	while ((token = JsonbIteratorNext(&it, &value, true)) != WJB_DONE)
	{
		if (token == WJB_KEY)
		{
			column = palloc0(sizeof(SubexpireSetColumn));
			column->name = pnstrdup(value.val.string.val, value.val.string.len);
		}
		else if (token == WJB_VALUE)
		{
			column->value = json_scalar_text(rule, column->name, &value);
			columns = lappend(columns, column);
		}
	}
	return columns;
}

/* A column of a subexpire_rules row, by name. */
static Datum
rule_column(HeapTuple tuple, TupleDesc desc, const char *name, bool *isnull)
{
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
			return heap_getattr(tuple, att->attnum, desc, isnull);
	}
	elog(ERROR, "column \"%s\" of %s is missing", name, RULES_TABLE);
	return (Datum) 0;			/* keep the compiler quiet */
}

/*
 * A column that must not be null.  The table says NOT NULL, but a row
 * reaches the check of a row being written (src/rule_check.c) before the
 * constraint is checked.
 */
static Datum
required_column(HeapTuple tuple, TupleDesc desc, const char *rule_name,
				const char *name)
{
	bool		isnull;
	Datum		value = rule_column(tuple, desc, name, &isnull);

	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 rule_name
				 ? errmsg("%s of rule \"%s\" must not be null", name, rule_name)
				 : errmsg("%s of a rule must not be null", name),
				 errhint("Leave the column out to get its default.")));
	return value;
}

static char *
rule_text(HeapTuple tuple, TupleDesc desc, const char *rule_name,
		  const char *name)
{
	return TextDatumGetCString(required_column(tuple, desc, rule_name, name));
}

/*
 * A row of subexpire_rules as a rule.  The table's NOT NULL and CHECK
 * constraints hold for every row read here.
 */
SubexpireRule *
subexpire_rule_from_tuple(HeapTuple tuple, TupleDesc desc)
{
	SubexpireRule *rule = palloc0(sizeof(SubexpireRule));
	const char *name;
	bool		isnull;
	Datum		updated;

	rule->name = rule_text(tuple, desc, NULL, "rule_name");
	name = rule->name;
	rule->target_table = rule_text(tuple, desc, name, "target_table");
	rule->status_column = rule_text(tuple, desc, name, "status_column");
	rule->from_status = rule_text(tuple, desc, name, "from_status");
	rule->to_status = rule_text(tuple, desc, name, "to_status");
	rule->expires_column = rule_text(tuple, desc, name, "expires_column");
	rule->grace_period = *DatumGetIntervalP(required_column(tuple, desc, name,
															"grace_period"));
	updated = rule_column(tuple, desc, "updated_column", &isnull);
	rule->updated_column = isnull ? NULL : TextDatumGetCString(updated);
	rule->set_columns = read_set_columns(rule,
										 DatumGetJsonbP(required_column(tuple, desc, name,
																		"set_columns")));
	rule->emit_events = DatumGetBool(required_column(tuple, desc, name,
													 "emit_events"));
	rule->max_expired_per_run = DatumGetInt64(required_column(tuple, desc, name,
															  "max_expired_per_run"));
	rule->run_order = DatumGetInt32(required_column(tuple, desc, name,
													"run_order"));
	rule->enabled = DatumGetBool(required_column(tuple, desc, name, "enabled"));
	return rule;
}

/* subexpire_rules in this database; InvalidOid before version 2.0. */
static Oid
rules_table(void)
{
	char	   *version;
	Oid			schema = subexpire_extension_schema(&version);

	if (!OidIsValid(schema) ||
		subexpire_version_number(version) < SUBEXPIRE_SQL_2_0)
		return InvalidOid;
	return get_relname_relid(RULES_TABLE, schema);
}

/* Every row of subexpire_rules, as rules, in no order. */
static List *
read_rules(Oid relid)
{
	Relation	rel = table_open(relid, AccessShareLock);
	TupleDesc	desc = RelationGetDescr(rel);
	TableScanDesc scan;
	HeapTuple	tuple;
	List	   *rules = NIL;

	scan = table_beginscan(rel, GetActiveSnapshot(), 0, NULL);
	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
		rules = lappend(rules, subexpire_rule_from_tuple(tuple, desc));
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	return rules;
}

/* run_order, then rule_name. */
static int
compare_rules(const ListCell *a, const ListCell *b)
{
	const SubexpireRule *ra = lfirst(a);
	const SubexpireRule *rb = lfirst(b);

	if (ra->run_order != rb->run_order)
		return ra->run_order < rb->run_order ? -1 : 1;
	return strcmp(ra->name, rb->name);
}

static void
load_rules_step(void *arg)
{
	*(List **) arg = subexpire_load_rules(NULL);
}

/*
 * The enabled rules, for monitoring, which must keep working when the job
 * cannot: NULL with them in *rules, or the error that reading them raised
 * (subexpire_rules damaged by hand, say), with *rules NIL.
 */
ErrorData *
subexpire_try_load_rules(List **rules)
{
	*rules = NIL;
	return subexpire_try(load_rules_step, rules);
}

/*
 * Are these rules, from subexpire_load_rules(), the one rule of the
 * settings?  Otherwise subexpire_rules defines the job (it may have rules
 * of which none is enabled), and the target settings are not used.
 */
bool
subexpire_rules_are_the_settings(const List *rules)
{
	return list_length(rules) == 1 &&
		((const SubexpireRule *) linitial(rules))->from_settings;
}

/*
 * The rules a run makes, in order: every enabled rule, or only the one
 * named "only" (when not NULL), which must exist and be enabled.  With no
 * rule in subexpire_rules, or no such table (SQL objects older than 2.0),
 * the rule of the settings.  Needs an active snapshot.
 */
List *
subexpire_load_rules(const char *only)
{
	Oid			relid = rules_table();
	List	   *all = OidIsValid(relid) ? read_rules(relid) : NIL;
	List	   *rules = NIL;
	ListCell   *lc;

	if (all == NIL)
		all = list_make1(settings_rule());
	foreach(lc, all)
	{
		SubexpireRule *rule = lfirst(lc);

		if (only != NULL && strcmp(rule->name, only) != 0)
			continue;
		if (only != NULL && !rule->enabled)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("rule \"%s\" is disabled", only),
					 errhint("Enable it first: UPDATE %s SET enabled = true WHERE rule_name = %s;",
							 RULES_TABLE, quote_literal_cstr(only))));
		if (rule->enabled)
			rules = lappend(rules, rule);
	}
	if (only != NULL && rules == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("rule \"%s\" does not exist", only),
				 errhint("The rules are the rows of %s; with none, the one rule is \"%s\", of the subexpire.* settings.",
						 RULES_TABLE, SUBEXPIRE_DEFAULT_RULE)));
	list_sort(rules, compare_rules);
	return rules;
}
