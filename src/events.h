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

#include "target.h"

/*
 * The events of rows that one statement expired: each row's expiry and
 * primary key columns, as values of the target's column types.
 */
typedef struct SubexpireExpiredRows
{
	int			nrows;
	int			maxrows;
	Datum	   *expires;		/* [maxrows] */
	bool	   *expires_nulls;
	Datum	  **keys;			/* [nkeys][maxrows] */
} SubexpireExpiredRows;

/* At most this many events are written by one INSERT. */
#define SUBEXPIRE_EVENTS_AT_ONCE 10000

extern SubexpireExpiredRows *subexpire_expired_rows_create(SubexpireTarget *target);
extern void subexpire_write_events(SubexpireTarget *target, int64 run_id,
								   TimestampTz expired_at,
								   SubexpireExpiredRows *rows);
extern bool subexpire_event_backlog(int64 *pending, TimestampTz *oldest);

#endif							/* SUBEXPIRE_EVENTS_H */
