/*-------------------------------------------------------------------------
 *
 * walwriter.c
 *	  Keep the WAL writer flushing while a batch of the worker runs.
 *
 * A batch writes a lot of WAL before it commits, much of it full-page
 * images, since the pages it touches are often touched first after a
 * checkpoint: expiring 200,000 of 1M rows wrote 250 MB in 4.6 s on a small
 * machine, 20,000 rows spread over the table 145 MB in 0.4 s.  The WAL
 * writer flushes only when it wakes, every wal_writer_delay (200 ms by
 * default) unless a commit wakes it, and during a batch nothing does.  Up
 * to 200 ms of the batch's WAL then waits unflushed, and the application's
 * next commit has to flush all of it before its own commit record: that
 * wait, more than the row locks, is what made the application's p99
 * latency 3 to 4 times longer while the worker ran (test/bench/gentle.sh).
 *
 * So while a batch runs, a timer wakes the WAL writer every few
 * milliseconds, as an asynchronous commit would.  What the WAL writer then
 * does is its own settings' business: it writes what is complete, and
 * flushes once wal_writer_flush_after has been written.  The batch itself
 * waits for nothing, and the work done is the same, only earlier.
 *
 * The timer's handler runs in a signal handler: it only sets a latch,
 * which is safe there.  enable_timeout_every() is new in PostgreSQL 15;
 * before it, the batches run without the timer, as they did before.
 *
 * IDENTIFICATION
 *	  src/walwriter.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "storage/latch.h"
#include "storage/proc.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "subexpire.h"

/*
 * How often to wake the WAL writer: about as long as the fastest batch
 * above takes to write wal_writer_flush_after's default 1 MB (3 ms).  With
 * 1M rows, 200,000 due, batches of 10000, the application's p99 was 3.2
 * times its own when woken every 5 ms, 2.3 times every 1 or 2 ms
 * (test/bench/gentle.sh, 3 pairs each).
 */
#define WAKE_WAL_WRITER_EVERY_MS 2

#if PG_VERSION_NUM >= 150000

static TimeoutId wake_timeout = MAX_TIMEOUTS;	/* not registered yet */

static void
wake_wal_writer(void)
{
	Latch	   *latch = ProcGlobal->walwriterLatch;

	if (latch != NULL)
		SetLatch(latch);
}

void
subexpire_start_waking_wal_writer(void)
{
	if (wake_timeout == MAX_TIMEOUTS)
		wake_timeout = RegisterTimeout(USER_TIMEOUT, wake_wal_writer);
	enable_timeout_every(wake_timeout,
						 TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													 WAKE_WAL_WRITER_EVERY_MS),
						 WAKE_WAL_WRITER_EVERY_MS);
}

void
subexpire_stop_waking_wal_writer(void)
{
	if (wake_timeout != MAX_TIMEOUTS)
		disable_timeout(wake_timeout, false);
}

#else

void
subexpire_start_waking_wal_writer(void)
{
}

void
subexpire_stop_waking_wal_writer(void)
{
}

#endif
