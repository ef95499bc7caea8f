/*-------------------------------------------------------------------------
 *
 * events.h
 *	  The outbox of expired rows: subexpire_events.
 *
 * IDENTIFICATION
 *	  src/events.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef SUBEXPIRE_EVENTS_H
#define SUBEXPIRE_EVENTS_H

#include "datatype/timestamp.h"

#include "own_table.h"
#include "target.h"

/* At most this many events are written by one INSERT. */
#define SUBEXPIRE_EVENTS_AT_ONCE 10000

/*
 * The events of rows that one statement expired, SUBEXPIRE_EVENTS_AT_ONCE
 * at most at a time: each row's expiry and primary key columns, as values
 * of the target's column types; and the INSERT that writes them, made
 * once a statement.
 */
typedef struct SubexpireExpiredRows
{
	int			nrows;
	Datum	   *expires;		/* [SUBEXPIRE_EVENTS_AT_ONCE] */
	Datum	  **keys;			/* [nkeys][SUBEXPIRE_EVENTS_AT_ONCE] */
	SubexpireOwnTable outbox;	/* subexpire_events */
	char	   *insert;
} SubexpireExpiredRows;

extern SubexpireExpiredRows *subexpire_expired_rows_create(SubexpireTarget *target);
extern void subexpire_write_events(SubexpireTarget *target, int64 run_id,
								   TimestampTz expired_at,
								   SubexpireExpiredRows *rows);
extern bool subexpire_event_backlog(int64 *pending, TimestampTz *oldest);

#endif							/* SUBEXPIRE_EVENTS_H */
