/*-------------------------------------------------------------------------
 *
 * settings.h
 *	  The settings of the subexpire extension (see the README's Reference
 *	  for what each one means).
 *
 * IDENTIFICATION
 *	  src/settings.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef SUBEXPIRE_SETTINGS_H
#define SUBEXPIRE_SETTINGS_H

extern char *subexpire_target_table;
extern char *subexpire_status_column;
extern char *subexpire_expires_column;
extern char *subexpire_updated_column;
extern char *subexpire_active_status;
extern char *subexpire_expired_status;
extern int	subexpire_grace_period;
extern int	subexpire_batch_size;
extern int	subexpire_max_expired_per_run;
extern int	subexpire_lock_wait;
extern int	subexpire_max_run_duration;
extern int	subexpire_history_retention;
extern int	subexpire_alert_no_expiry_after;
extern int	subexpire_alert_max_expired;
extern int	subexpire_alert_event_backlog_after;
extern bool subexpire_log_expired;
extern bool subexpire_enabled;
extern char *subexpire_schedule;
extern char *subexpire_timezone;
extern char *subexpire_database;
extern char *subexpire_role;
extern bool subexpire_catch_up;

/* subexpire.database lists at most this many databases. */
#define SUBEXPIRE_MAX_DATABASES 32

extern void subexpire_define_settings(void);
extern int	subexpire_database_count(void);
extern const char *subexpire_database_name(int i);
extern bool subexpire_database_listed(const char *name);

#endif							/* SUBEXPIRE_SETTINGS_H */
