/* The event records of process life (events.h): names, levels and fields
 * in one place, documented in docs/logs.md. */
#include "process/events.h"

#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <kin/logs.h>
#include <kin/monitor.h>
#include <kin/msg.h>

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

/* The requester's fields, the last ones of an operator record: the
 * operator's pid (decoded from its id) and uid, which is this process's:
 * operators attach through the runtime directory, open to this user
 * only. A context requester has neither. */
static void
who(kin_field *f, uint32_t from)
{
    int pid;
    if (kin_monitor_operator_pid(from, &pid)) {
        f[0] = KIN_FINT("operator_pid", pid);
        f[1] = KIN_FUINT("operator_uid", (uint32_t)getuid());
    } else {
        f[0] = KIN__FEND;
    }
    f[2] = KIN__FEND;
}

void
kin__ev_op_cancel(uint32_t from, uint32_t from_task, uint32_t task,
                  kin_err error)
{
    if (!kin_logs_enabled(KIN_LOG_INFO))
        return;
    kin_field f[] = {
        KIN_FSTR("event", KIN__EV_OP_CANCEL),
        KIN_FUINT("target_task", task),
        KIN_FUINT("from", from),
        KIN_FUINT("from_task", from_task),
        KIN_FSTR("error", error ? kin_strerror(error) : ""),
        KIN__FEND,
        KIN__FEND,
        KIN__FEND,
    };
    who(&f[5], from);
    kin_logs_emit(KIN_LOG_INFO, __FILE__, __LINE__, KIN__EV_OP_CANCEL, f);
}

void
kin__ev_op_signal(uint32_t from, int sig)
{
    if (!kin_logs_enabled(KIN_LOG_WARNING))
        return;
    const char *name = sigabbrev_np(sig);
    kin_field f[] = {
        KIN_FSTR("event", KIN__EV_OP_SIGNAL),
        KIN_FINT("signal", sig),
        KIN_FSTR("signal_name", name ? name : "?"),
        KIN_FUINT("from", from),
        KIN__FEND,
        KIN__FEND,
        KIN__FEND,
    };
    who(&f[4], from);
    kin_logs_emit(KIN_LOG_WARNING, __FILE__, __LINE__, KIN__EV_OP_SIGNAL, f);
}

void
kin__ev_op_command(uint32_t from, const char *command, const char *args,
                   kin_err error)
{
    if (!kin_logs_enabled(KIN_LOG_INFO))
        return;
    kin_field f[] = {
        KIN_FSTR("event", KIN__EV_OP_COMMAND),
        KIN_FSTR("command", command),
        KIN_FSTR("args", args),
        KIN_FUINT("from", from),
        KIN_FSTR("error", error ? kin_strerror(error) : ""),
        KIN__FEND,
        KIN__FEND,
        KIN__FEND,
    };
    who(&f[5], from);
    kin_logs_emit(KIN_LOG_INFO, __FILE__, __LINE__, KIN__EV_OP_COMMAND, f);
}

/* The join records' fields: whichever of the joiner's facts are known. */
void
kin__ev_join(void *arg, const kin__join_event *ev)
{
    (void)arg;
    static const char *const names[] = {
        [KIN__JOIN_ACCEPT] = KIN__EV_JOIN_ACCEPT,
        [KIN__JOIN_LEAVE] = KIN__EV_JOIN_LEAVE,
        [KIN__JOIN_REFUSED] = KIN__EV_JOIN_REFUSED,
        [KIN__JOIN_REVOKED] = KIN__EV_JOIN_REVOKED,
    };
    const char *name = names[ev->what];
    int level = ev->what == KIN__JOIN_REFUSED || ev->what == KIN__JOIN_REVOKED
                    ? KIN_LOG_WARNING
                    : KIN_LOG_INFO;
    if (!kin_logs_enabled(level))
        return;
    kin_field f[20];
    int i = 0;
    f[i++] = KIN_FSTR("event", name);
    if (ev->id)
        f[i++] = KIN_FUINT("joiner_ctx", ev->id);
    if (ev->name[0])
        f[i++] = KIN_FSTR("joiner", ev->name);
    if (ev->how[0])
        f[i++] =
            KIN_FSTR(ev->what == KIN__JOIN_REFUSED ? "reason" : "how", ev->how);
    if (ev->error[0])
        f[i++] = KIN_FSTR("error", ev->error);
    if (ev->what == KIN__JOIN_ACCEPT)
        f[i++] = KIN_FBOOL("rejoin", ev->rejoin);
    f[i++] = KIN_FSTR("transport", ev->transport);
    if (ev->pid >= 0)
        f[i++] = KIN_FINT("joiner_pid", ev->pid);
    if (ev->uid >= 0)
        f[i++] = KIN_FUINT("joiner_uid", (uint32_t)ev->uid);
    if (ev->address[0])
        f[i++] = KIN_FSTR("address", ev->address);
    if (ev->key[0])
        f[i++] = KIN_FSTR("certificate", ev->key);
    if (ev->cert_host[0])
        f[i++] = KIN_FSTR("cert_host", ev->cert_host);
    if (ev->cert_role[0])
        f[i++] = KIN_FSTR("cert_role", ev->cert_role);
    if (ev->their_version) {
        f[i++] = KIN_FUINT("their_version", ev->their_version);
        f[i++] = KIN_FUINT("our_version", KIN_PROTO_VERSION);
    }
    f[i] = KIN__FEND;
    kin_logs_emit(level, __FILE__, __LINE__, name, f);
}
