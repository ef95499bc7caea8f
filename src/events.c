/*-------------------------------------------------------------------------
 *
 * events.c
 *	  The outbox of expired rows: one row in subexpire_events for every row
 *	  that a rule with emit_events expires, written in the (sub)transaction
 *	  of the statement that expired it.
 *
 * The expiry statements return, for each row they expired, its expiry and
 * its primary key (src/statement.c); the events are written right after,
 * before anything else runs in that (sub)transaction, so that an event
 * exists exactly when its row's expiry commits: a rollback, a failed
 * batch or a crash leaves neither.  The INSERT runs as the owner of
 * subexpire_events (src/own_table.c), not as the target's owner, who may
 * neither write nor forge the outbox; it builds row_key and converts the
 * expiry itself, so the expiry statement stays a plain UPDATE that Citus
 * can push down, and the events of a distributed table are written on the
 * coordinator.  NOTIFY subexpire_events wakes consumers when the
 * transaction commits (once a transaction: the payload is always empty).
 *
 * IDENTIFICATION
 *	  src/events.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/async.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "events.h"
#include "extension.h"
#include "own_table.h"

#define EVENTS_TABLE "subexpire_events"

/* The parameters before the arrays of the INSERT (see insert_events()). */
#define EVENT_FIXED_PARAMS 6

/* An array of the n values, of the type of a column, for the INSERT. */
static Datum
column_array(Oid type, Datum *values, int n, Oid *array_type)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;

	*array_type = get_array_type(type);
	if (!OidIsValid(*array_type))
		elog(ERROR, "type %s has no array type", format_type_be(type));
	get_typlenbyvalalign(type, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_array(values, n, type, typlen, typbyval,
										   typalign));
}

/*
 * INSERT INTO subexpire_events (...) SELECT $1, ..., jsonb_build_object(
 * 'id', r.k1), ... FROM ROWS FROM (unnest($7), unnest($8)) AS r(e, k1):
 * one event for each of
 * the rows, in their order.  The key's column names are literals, the
 * values parameters.
 */
static char *
insert_events_sql(const SubexpireOwnTable *events, SubexpireTarget *target)
{
	StringInfoData sql;

	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "INSERT INTO %s (run_id, rule_name, target_table, row_key, from_status, to_status, expires_at, expired_at) "
					 "SELECT $1, $2, $3, pg_catalog.jsonb_build_object(",
					 events->name);
	for (int k = 0; k < target->nkeys; k++)
		appendStringInfo(&sql, "%s%s, r.k%d", k > 0 ? ", " : "",
						 quote_literal_cstr(target->key_names[k]), k + 1);
	appendStringInfo(&sql, "), $4, $5, CAST(r.e AS pg_catalog.timestamptz), $6 FROM ROWS FROM (pg_catalog.unnest($%d)",
					 EVENT_FIXED_PARAMS + 1);
	for (int k = 0; k < target->nkeys; k++)
		appendStringInfo(&sql, ", pg_catalog.unnest($%d)", EVENT_FIXED_PARAMS + 2 + k);
	appendStringInfoString(&sql, ") AS r(e");
	for (int k = 0; k < target->nkeys; k++)
		appendStringInfo(&sql, ", k%d", k + 1);
	appendStringInfoChar(&sql, ')');
	return sql.data;
}

/*
 * An empty collection for the events of one statement on target: the
 * outbox is looked up and its INSERT made here, once, for all the
 * statement's rows.
 */
SubexpireExpiredRows *
subexpire_expired_rows_create(SubexpireTarget *target)
{
	SubexpireExpiredRows *rows = palloc0(sizeof(SubexpireExpiredRows));

	(void) subexpire_key_columns(target);
	if (target->nkeys == 0)
		elog(ERROR, "table %s has no primary key to name its events' rows by",
			 target->qualified_name);
	rows->expires = palloc(SUBEXPIRE_EVENTS_AT_ONCE * sizeof(Datum));
	rows->keys = palloc(target->nkeys * sizeof(Datum *));
	for (int k = 0; k < target->nkeys; k++)
		rows->keys[k] = palloc(SUBEXPIRE_EVENTS_AT_ONCE * sizeof(Datum));
	rows->outbox = subexpire_find_own_table(EVENTS_TABLE);
	rows->insert = insert_events_sql(&rows->outbox, target);
	return rows;
}

/*
 * Write the events of the rows collected in "rows", expired by run run_id
 * at expired_at under target's rule, and empty the collection.  The
 * caller is connected to SPI, in the (sub)transaction that expired them.
 */
void
subexpire_write_events(SubexpireTarget *target, int64 run_id,
					   TimestampTz expired_at, SubexpireExpiredRows *rows)
{
	const SubexpireRule *rule = target->rule;
	int			nargs = EVENT_FIXED_PARAMS + 1 + target->nkeys;
	Oid		   *types;
	Datum	   *values;
	int			rc;

	if (rows->nrows == 0)
		return;
	types = palloc(nargs * sizeof(Oid));
	values = palloc(nargs * sizeof(Datum));
	types[0] = INT8OID;
	values[0] = Int64GetDatum(run_id);
	types[1] = TEXTOID;
	values[1] = CStringGetTextDatum(rule->name);
	types[2] = TEXTOID;
	values[2] = CStringGetTextDatum(target->qualified_name);
	types[3] = TEXTOID;
	values[3] = CStringGetTextDatum(rule->from_status);
	types[4] = TEXTOID;
	values[4] = CStringGetTextDatum(rule->to_status);
	types[5] = TIMESTAMPTZOID;
	values[5] = TimestampTzGetDatum(expired_at);
	values[EVENT_FIXED_PARAMS] = column_array(target->expires_type,
											  rows->expires, rows->nrows,
											  &types[EVENT_FIXED_PARAMS]);
	for (int k = 0; k < target->nkeys; k++)
		values[EVENT_FIXED_PARAMS + 1 + k] =
			column_array(target->key_types[k], rows->keys[k], rows->nrows,
						 &types[EVENT_FIXED_PARAMS + 1 + k]);

	rc = subexpire_execute_on_own_table(&rows->outbox, RowExclusiveLock,
										"to write the run's events",
										rows->insert, nargs, types, values,
										NULL);
	if (rc != SPI_OK_INSERT || SPI_processed != (uint64) rows->nrows)
		elog(ERROR, "writing %d events failed: %s", rows->nrows,
			 SPI_result_code_string(rc));
	Async_Notify("subexpire_events", "");
	rows->nrows = 0;
}

/*
 * The events not taken yet in this database: how many, and when the oldest
 * of them was expired (0 when there is none).  False when the extension's
 * SQL objects are older than 2.0, which have no outbox.  Read as the
 * outbox's owner: monitoring needs no rights on it.
 */
bool
subexpire_event_backlog(int64 *pending, TimestampTz *oldest)
{
	SubexpireOwnTable events;
	char	   *version;
	bool		isnull;
	Datum		value;
	int			rc;

	*pending = 0;
	*oldest = 0;
	if (subexpire_sql_version(&version) < SUBEXPIRE_SQL_2_0)
		return false;
	events = subexpire_find_own_table(EVENTS_TABLE);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	rc = subexpire_execute_on_own_table(&events, AccessShareLock,
										"to read the pending events",
										psprintf("SELECT pg_catalog.count(*), "
												 "(SELECT expired_at FROM %s ORDER BY event_id LIMIT 1) FROM %s",
												 events.name, events.name),
										0, NULL, NULL, NULL);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "reading the pending events failed: %s",
			 SPI_result_code_string(rc));
	*pending = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										   SPI_tuptable->tupdesc, 1, &isnull));
	value = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2,
						  &isnull);
	if (!isnull)
		*oldest = DatumGetTimestampTz(value);
	SPI_finish();
	return true;
}
