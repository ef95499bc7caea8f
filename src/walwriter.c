/*-------------------------------------------------------------------------
 *
 * walwriter.c
 *	  Keep the WAL writer flushing while a batch of the worker runs.
 *
 * A batch writes a lot of WAL before it commits, much of it full-page
 * images, since the pages it touches are often touched first after a
 * checkpoint.  The WAL writer flushes only when it wakes, every
 * wal_writer_delay unless a commit wakes it, and during a batch nothing
 * does.  Up to wal_writer_delay's worth of the batch's WAL then waits
 * unflushed, and the application's next commit has to flush all of it
 * before its own commit record: that wait, more than the row locks, is
 * what makes the application's commits slow while the worker runs
 * (test/bench/gentle.sh measures it; test/bench/README.md has the figures).
 *
 * So while a batch runs, a timer wakes the WAL writer every few
 * milliseconds, as an asynchronous commit would.  What the WAL writer then
 * does is its own settings' business: it writes what is complete, and
 * flushes once wal_writer_flush_after has been written.  The batch itself
 * waits for nothing, and the work done is the same, only earlier.
 *
 * The timer's handler runs in a signal handler: it only sets a latch,
 * which is safe there.  enable_timeout_every() is new in PostgreSQL 15;
 * before it, the batches run without the timer.
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

#include "walwriter.h"

/*
 * How often to wake the WAL writer: a little less than a fast batch takes
 * to write wal_writer_flush_after's default 1 MB, so that the WAL writer
 * finds about that much to flush each time it wakes.
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
