/* Shared definitions of kin's public headers: the export macro and the
 * fixed-width types every module uses. */
#ifndef KIN_DEFS_H
#define KIN_DEFS_H

#include <stddef.h>
#include <stdint.h>

#if defined(KIN_BUILDING)
#define KIN_EXPORT __attribute__((visibility("default")))
#else
#define KIN_EXPORT
#endif

#if defined(__GNUC__)
#define KIN_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define KIN_PRINTF(fmt, args)
#endif

/* Waits that never time out: for every timeout_ms argument of a wait, and
 * any negative one means the same. kin_task_sleep(KIN_FOREVER) sleeps until
 * the task is cancelled. */
#define KIN_FOREVER (-1)

#endif
