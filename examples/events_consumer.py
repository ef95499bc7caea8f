#!/usr/bin/python3
"""examples/events_consumer.py: a consumer of subexpire's events.

subexpire writes one row to subexpire_events for every row that a rule
with emit_events expires, in the transaction that expires it, and sends
NOTIFY subexpire_events when that transaction commits.  This consumer
LISTENs on that channel, takes the events in batches with
subexpire_take_events() and passes each one to an async handler that the
application supplies: here, by default, one that appends a JSON line to a
file.

Delivery is at least once.  A batch is taken, handled and committed in one
transaction: subexpire_take_events() deletes the events, and they are gone
only when that transaction commits, after the handler has returned for
every one of them.  If a handler raises, or the consumer or its connection
dies in the middle of a batch, the transaction rolls back and the whole
batch comes back to the next take, with the events whose handler had
already run.  A handler must therefore be idempotent: dedupe by event_id
(it comes back unchanged), or by row_key with run_id and rule_name, for
example with a unique constraint where the handler records its effect.
An event whose handler always raises holds up the events after it: the
consumer retries it every few seconds, and subexpire_health()'s
event_backlog check warns when the oldest event waits too long.

Several consumers may run at once: subexpire_take_events() skips the
events that another one holds (SKIP LOCKED).  Events are handled in the
order they were written within a batch, not across batches of several
consumers.

The role it connects as needs EXECUTE on subexpire_take_events():
    GRANT EXECUTE ON FUNCTION subexpire_take_events(integer) TO app_consumer;

Usage (Python 3.11 and Debian's python3-asyncpg, nothing else):
    events_consumer.py --dsn postgresql://app_consumer@db/app --output events.jsonl
    events_consumer.py --dsn ... --output events.jsonl --exit-when-idle   # from cron
"""

import argparse
import asyncio
import json
import logging
import os
import signal
import sys

import asyncpg

CHANNEL = "subexpire_events"
RETRY_SECONDS = 5

log = logging.getLogger("events_consumer")


async def take_batch(conn, handler, batch_size):
    """Take up to batch_size events, handle each, commit; return how many."""
    # The take deletes the events in this transaction, so they are consumed
    # only if every handler returned and the commit succeeds; an exception
    # rolls the transaction back and the events come back to the next take.
    async with conn.transaction():
        events = await conn.fetch("SELECT * FROM subexpire_take_events($1)", batch_size)
        for event in events:
            await handler(event)
    return len(events)


async def drain(conn, handler, batch_size):
    """Take batches until one comes back short: nothing left to take now."""
    handled = 0
    while True:
        taken = await take_batch(conn, handler, batch_size)
        handled += taken
        if taken < batch_size:
            return handled


async def consume(dsn, handler, batch_size=100, poll_seconds=30.0, exit_when_idle=False):
    """Handle events until cancelled, or with exit_when_idle until none is left.

    Returns the exit status: 0, or 1 for a failure with exit_when_idle.
    """
    while True:
        conn = None
        try:
            conn = await asyncpg.connect(dsn)
            # row_key as a dict rather than JSON text.
            await conn.set_type_codec("jsonb", schema="pg_catalog",
                                      encoder=json.dumps, decoder=json.loads)
            wake = asyncio.Event()
            # LISTEN before the first take, so that no event falls between
            # them: the take finds the events committed before, and a
            # notification announces those committed after.  A lost
            # connection wakes us too, so that a take notices it at once.
            await conn.add_listener(CHANNEL, lambda *_: wake.set())
            conn.add_termination_listener(lambda *_: wake.set())
            caught_up = False
            while True:
                # Cleared before the drain, so that a notification that
                # comes during the drain ends the wait below at once.
                wake.clear()
                handled = await drain(conn, handler, batch_size)
                if handled:
                    log.info("handled %d events", handled)
                if exit_when_idle:
                    return 0
                if not caught_up:
                    log.info("caught up; waiting for notifications on %s", CHANNEL)
                    caught_up = True
                # No notification announces the events that come back when
                # another consumer rolls back a batch that we skipped: the
                # timeout takes them then.
                try:
                    await asyncio.wait_for(wake.wait(), poll_seconds)
                except asyncio.TimeoutError:
                    pass
        except Exception as exc:
            # Either way, the batch in progress was rolled back, and its
            # events are taken again.
            if conn is None or conn.is_closed():
                # The server is down or restarting, or the connection was lost.
                log.error("connection failed: %s", exc)
            else:
                # A handler raised, or a statement failed.
                log.exception("taking events failed")
        finally:
            # Without the goodbye message, which could hang or raise on a
            # broken connection; the server ends the session all the same.
            if conn is not None:
                conn.terminate()
        if exit_when_idle:
            return 1
        log.info("reconnecting in %d s", RETRY_SECONDS)
        await asyncio.sleep(RETRY_SECONDS)


def file_handler(path, delay=0.0):
    """The example's handler: one JSON line per event, on disk when it returns."""
    out = open(path, "a", encoding="utf-8")

    async def handle(event):
        if delay:
            await asyncio.sleep(delay)  # --handler-delay: a slow handler, for tests
        # One write() of a whole line, then flushed and fsynced: the event's
        # effect is durable before its batch can commit.  (A real handler
        # would await its own I/O instead of blocking the event loop.)
        out.write(json.dumps(dict(event), default=lambda v: v.isoformat()) + "\n")
        out.flush()
        os.fsync(out.fileno())

    return handle


def parse_args():
    p = argparse.ArgumentParser(description="Take and handle subexpire's events, each at least once.")
    p.add_argument("--dsn", required=True,
                   help="where to connect: postgresql://user@host/db, or a unix socket: "
                        "postgresql:///db?host=/run/postgresql")
    p.add_argument("--batch-size", type=int, default=100, help="events a transaction takes (100)")
    p.add_argument("--output", required=True, metavar="FILE",
                   help="the file that the handler appends one JSON line an event to")
    p.add_argument("--poll-seconds", type=float, default=30.0,
                   help="take events at least this often without a notification (30)")
    p.add_argument("--exit-when-idle", action="store_true",
                   help="exit once no event is left to take, with status 1 on a failure "
                        "(for cron and tests)")
    p.add_argument("--handler-delay", type=float, default=0.0, metavar="MS",
                   help="sleep this long in each event's handler (to test a slow handler)")
    args = p.parse_args()
    if args.batch_size < 1:
        p.error("--batch-size must be 1 or more")
    return args


async def main():
    args = parse_args()
    handler = file_handler(args.output, args.handler_delay / 1000)
    # SIGTERM and SIGINT stop the consumer: the batch in progress rolls
    # back, and its events come back to the next take.
    task = asyncio.current_task()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, task.cancel)
    try:
        return await consume(args.dsn, handler, args.batch_size, args.poll_seconds,
                             args.exit_when_idle)
    except asyncio.CancelledError:
        log.info("stopped")
        return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    sys.exit(asyncio.run(main()))
