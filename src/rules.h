/*-------------------------------------------------------------------------
 *
 * rules.h
 *	  The lifecycle rules a run makes: the rows of subexpire_rules, or the
 *	  one rule that the subexpire.* target settings describe.
 *
 * IDENTIFICATION
 *	  src/rules.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef SUBEXPIRE_RULES_H
#define SUBEXPIRE_RULES_H

#include "access/htup.h"
#include "access/tupdesc.h"
#include "datatype/timestamp.h"
#include "nodes/pg_list.h"
#include "utils/elog.h"

/* The name of the rule that the settings describe. */
#define SUBEXPIRE_DEFAULT_RULE "default"

/* Names are at most this long (the table's check says so too). */
#define SUBEXPIRE_RULE_NAME_MAX 63

/* One column that a rule sets besides the status: set_columns. */
typedef struct SubexpireSetColumn
{
	char	   *name;			/* the column's name, as in the catalog */
	char	   *value;			/* input for the column's type; NULL: NULL */
} SubexpireSetColumn;

/*
 * A rule as written: names and words are text, converted against the
 * catalog when its target is opened (src/target.c).  The column names are
 * SQL identifiers (quoted where needed), as in the settings; the names in
 * set_columns are the columns' own.
 */
typedef struct SubexpireRule
{
	char	   *name;
	bool		from_settings;	/* the rule 'default' of the settings */
	char	   *target_table;
	char	   *status_column;
	char	   *from_status;
	char	   *to_status;
	char	   *expires_column;
	Interval	grace_period;
	char	   *updated_column; /* NULL: none */
	List	   *set_columns;	/* of SubexpireSetColumn */
	bool		emit_events;
	int64		max_expired_per_run;	/* 0: none */
	int			run_order;
	bool		enabled;
} SubexpireRule;

extern List *subexpire_load_rules(const char *only);
extern ErrorData *subexpire_try_load_rules(List **rules);
extern bool subexpire_rules_are_the_settings(const List *rules);
extern SubexpireRule *subexpire_rule_from_tuple(HeapTuple tuple,
												TupleDesc desc);
extern char *subexpire_rule_field(const SubexpireRule *rule,
								  const char *column);

#endif							/* SUBEXPIRE_RULES_H */
