/*-------------------------------------------------------------------------
 *
 * run_xacts.h
 *	  The registry of expiry transactions in progress.
 *
 * IDENTIFICATION
 *	  src/run_xacts.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef SUBEXPIRE_RUN_XACTS_H
#define SUBEXPIRE_RUN_XACTS_H

extern void subexpire_register_run_xact(void);
extern bool subexpire_is_run_xact(TransactionId xid);

#endif							/* SUBEXPIRE_RUN_XACTS_H */
