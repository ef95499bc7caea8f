/*-------------------------------------------------------------------------
 *
 * subexpire.c
 *	  The library's entry point: _PG_init.
 *
 * Loading the library defines the settings (src/settings.c).  Preloading
 * it (shared_preload_libraries) also reserves the shared memory
 * (src/shmem.c) and registers the scheduler (src/scheduler.c); without
 * them, expire_subscriptions() works and nothing is counted or scheduled.
 *
 * IDENTIFICATION
 *	  src/subexpire.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"

#include "scheduler.h"
#include "settings.h"
#include "shmem.h"

PG_MODULE_MAGIC;

#if PG_VERSION_NUM < 160000
void		_PG_init(void);
#endif

void
_PG_init(void)
{
	subexpire_define_settings();
	if (process_shared_preload_libraries_in_progress)
	{
		subexpire_shmem_init();
		subexpire_register_scheduler();
	}
}
