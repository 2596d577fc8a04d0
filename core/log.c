/* The diagnostics hook: one handler, one minimum level, both swapped
 * atomically so logging threads never take a lock. */
#include <kin/diag.h>

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>

typedef struct hook {
    kin_diag_fn fn;
    void *arg;
} hook;

static _Atomic(int) min_level = KIN_LOG_CRITICAL + 1;
static hook hooks[2];
static atomic_int current;
static atomic_flag set_lock = ATOMIC_FLAG_INIT;

void
kin_diag_set_handler(kin_diag_fn fn, void *arg, kin_log_level level)
{
    while (atomic_flag_test_and_set(&set_lock))
        ;
    /* Fill the slot not in use, then publish it. */
    int next = !atomic_load(&current);
    hooks[next].fn = fn;
    hooks[next].arg = arg;
    atomic_store(&current, next);
    atomic_store(&min_level, fn ? (int)level : KIN_LOG_CRITICAL + 1);
    atomic_flag_clear(&set_lock);
}

const char *
kin_log_level_name(kin_log_level level)
{
    if (level >= KIN_LOG_CRITICAL)
        return "critical";
    if (level >= KIN_LOG_ERROR)
        return "error";
    if (level >= KIN_LOG_WARNING)
        return "warning";
    if (level >= KIN_LOG_INFO)
        return "info";
    return "debug";
}

void
kin_diag_stderr(kin_log_level level, const char *file, int line,
                const char *msg, void *arg)
{
    fprintf(stderr, "kin %s %s:%d: %s\n", kin_log_level_name(level), file, line,
            msg);
}

int
kin_diag_enabled(kin_log_level level)
{
    return (int)level >= atomic_load_explicit(&min_level, memory_order_relaxed);
}

void
kin_diag_emit(kin_log_level level, const char *file, int line, const char *fmt,
              ...)
{
    if (!kin_diag_enabled(level))
        return;
    hook h = hooks[atomic_load(&current)];
    if (!h.fn)
        return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    h.fn(level, file, line, buf, h.arg);
}
