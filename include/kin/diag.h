/* The library's own diagnostics hook. kin prints nothing unless asked: its
 * messages go to a handler the application sets (none by default). Records
 * from whole trees of contexts are the log forwarder's business, not this
 * hook's. */
#ifndef KIN_DIAG_H
#define KIN_DIAG_H

#include <kin/defs.h>

typedef enum kin_log_level {
    KIN_LOG_DEBUG = 10,
    KIN_LOG_INFO = 20,
    KIN_LOG_WARNING = 30,
    KIN_LOG_ERROR = 40,
    KIN_LOG_CRITICAL = 50,
} kin_log_level;

/* Receives one formatted diagnostic (no trailing newline). Called on the
 * thread that logs, possibly several at once: it must be thread-safe. */
typedef void (*kin_diag_fn)(kin_log_level level, const char *file, int line,
                            const char *msg, void *arg);

/* Sets the handler and the minimum level passed to it (records below it cost
 * one comparison). fn NULL turns diagnostics off (the default). Any thread. */
KIN_EXPORT void kin_diag_set_handler(kin_diag_fn fn, void *arg,
                                     kin_log_level min_level);

/* A ready-made handler printing "kin LEVEL file:line: msg" lines to stderr. */
KIN_EXPORT void kin_diag_stderr(kin_log_level level, const char *file, int line,
                                const char *msg, void *arg);

/* Name of a level ("debug", "info", "warning", "error", "critical"). */
KIN_EXPORT const char *kin_log_level_name(kin_log_level level);

/* Emits a diagnostic if a handler is set and level is enabled. Any thread. */
KIN_EXPORT void kin_diag_emit(kin_log_level level, const char *file, int line,
                              const char *fmt, ...) KIN_PRINTF(4, 5);

/* Whether level would reach the handler. Any thread. */
KIN_EXPORT int kin_diag_enabled(kin_log_level level);

#endif
