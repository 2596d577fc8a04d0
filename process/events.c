/* The event records of process life (events.h): names, levels and fields
 * in one place, documented in docs/logs.md. */
#include "process/events.h"

#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#include <kin/logs.h>

#include "process/child.h"

void
kin__ev_child_exit(const char *name, uint32_t ctx, pid_t pid, int status)
{
    bool sig = WIFSIGNALED(status);
    bool emergency = kin__is_emergency(status);
    int level = emergency ? KIN_LOG_ERROR
                : sig || (WIFEXITED(status) && WEXITSTATUS(status))
                    ? KIN_LOG_WARNING
                    : KIN_LOG_INFO;
    if (!kin_logs_enabled(level))
        return;
    kin_field f[] = {
        KIN_FSTR("event", KIN__EV_CHILD_EXIT),
        KIN_FSTR("child", name),
        KIN_FUINT("child_ctx", ctx),
        KIN_FINT("child_pid", pid),
        sig ? KIN_FINT("signal", WTERMSIG(status))
            : KIN_FINT("status", WIFEXITED(status) ? WEXITSTATUS(status) : -1),
        sig ? KIN_FSTR("signal_name", sigabbrev_np(WTERMSIG(status)))
            : KIN_FBOOL("emergency", emergency),
        KIN__FEND,
    };
    kin_logs_emit(level, __FILE__, __LINE__, KIN__EV_CHILD_EXIT, f);
}

void
kin__ev_sup_child(const char *ev, const char *name, uint32_t ctx, pid_t pid,
                  unsigned restarts, kin_err error)
{
    bool failed = !strcmp(ev, KIN__EV_CHILD_START_FAILED);
    int level = failed ? KIN_LOG_ERROR : KIN_LOG_INFO;
    if (!kin_logs_enabled(level))
        return;
    kin_field f[] = {
        KIN_FSTR("event", ev),
        KIN_FSTR("child", name),
        KIN_FUINT("child_ctx", ctx),
        KIN_FINT("child_pid", pid),
        KIN_FUINT("restarts", restarts),
        failed ? KIN_FSTR("error", kin_strerror(error)) : KIN__FEND,
        KIN__FEND,
    };
    kin_logs_emit(level, __FILE__, __LINE__, ev, f);
}

void
kin__ev_sup_gave_up(int intensity, int period_ms)
{
    KIN_LOG(KIN_LOG_ERROR, KIN__EV_SUP_GAVE_UP,
            KIN_FSTR("event", KIN__EV_SUP_GAVE_UP),
            KIN_FINT("intensity", intensity), KIN_FINT("period_ms", period_ms));
}

void
kin__ev_emergency(uint32_t ctx, uint32_t origin)
{
    KIN_LOG(KIN_LOG_CRITICAL, KIN__EV_EMERGENCY,
            KIN_FSTR("event", KIN__EV_EMERGENCY), KIN_FUINT("ctx", ctx),
            KIN_FUINT("origin", origin));
}
