/*-------------------------------------------------------------------------
 *
 * walwriter.h
 *	  Keep the WAL writer flushing while a batch of the worker runs.
 *
 * IDENTIFICATION
 *	  src/walwriter.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef SUBEXPIRE_WALWRITER_H
#define SUBEXPIRE_WALWRITER_H

extern void subexpire_start_waking_wal_writer(void);
extern void subexpire_stop_waking_wal_writer(void);

#endif							/* SUBEXPIRE_WALWRITER_H */
