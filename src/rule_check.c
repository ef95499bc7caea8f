/*-------------------------------------------------------------------------
 *
 * rule_check.c
 *	  The trigger that checks a row of subexpire_rules when it is written,
 *	  against the catalog, so that a rule that cannot work is refused with
 *	  an error that names its column, and nothing is written.
 *
 * The checks are those that every run makes when it opens the rule's
 * target (src/target.c), so a rule means the same when it is written and
 * when it runs: the table and its columns, their types, both words and
 * every value of set_columns read with their columns' input functions (as
 * the table's owner), and the rights of the row's writer and of the
 * worker's role to update the table.  A writer of subexpire_rules who may
 * not update a table cannot make the worker update it.  A disabled rule
 * is checked when it is enabled.
 *
 * IDENTIFICATION
 *	  src/rule_check.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/trigger.h"
#include "executor/spi.h"
#include "utils/guc.h"
#include "utils/rel.h"

#include "rule_check.h"
#include "rules.h"
#include "target.h"

/*
 * Letters, digits, '_' and '-', 1 to 63 of them (the table's CHECK says the
 * same, but is checked after this trigger): a name that is safe in a
 * metric's label and in a log line.
 */
static void
check_name(const char *name)
{
	size_t		len = strlen(name);
	bool		ok = (len >= 1 && len <= SUBEXPIRE_RULE_NAME_MAX);

	for (const char *c = name; ok && *c != '\0'; c++)
		ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
			(*c >= '0' && *c <= '9') || *c == '_' || *c == '-';
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("rule_name \"%s\" is not a valid rule name", name),
				 errdetail("A rule's name is 1 to %d letters, digits, '_' or '-'.",
						   SUBEXPIRE_RULE_NAME_MAX),
				 errhint("Name the rule after the transition it makes: trial-end, grace_end.")));
}

PG_FUNCTION_INFO_V1(subexpire_rules_check);

/*
 * BEFORE INSERT OR UPDATE FOR EACH ROW on subexpire_rules: check the new
 * row, and refuse it with the rule's error, or let it be written as it is.
 */
Datum
subexpire_rules_check(PG_FUNCTION_ARGS)
{
	TriggerData *data = (TriggerData *) fcinfo->context;
	HeapTuple	tuple;
	SubexpireRule *rule;
	SubexpireTarget *target;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_BEFORE(data->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(data->tg_event) ||
		TRIGGER_FIRED_BY_DELETE(data->tg_event))
		elog(ERROR, "subexpire_rules_check() must be a BEFORE INSERT OR UPDATE row trigger");

	tuple = TRIGGER_FIRED_BY_UPDATE(data->tg_event) ? data->tg_newtuple
		: data->tg_trigtuple;
	rule = subexpire_rule_from_tuple(tuple, RelationGetDescr(data->tg_relation));
	check_name(rule->name);

	/*
	 * A disabled rule does not run, and is checked when it is enabled: a rule
	 * whose table is gone can always be turned off.  With
	 * check_function_bodies off, a rule is taken as written, as a function
	 * body is: pg_dump turns it off for a restore, which loads the rules
	 * before their tables' keys and grants.  Every run checks the rule again
	 * when it starts.
	 */
	if (rule->enabled && check_function_bodies)
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		target = subexpire_open_target(rule, SUBEXPIRE_FOR_CHECK);
		subexpire_close_target(target);
		SPI_finish();
	}

	return PointerGetDatum(tuple);
}
