/* The fork factory (kin_spawn_opts.fork): a zygote process of this
 * executable, started once per node from its broker thread, stays
 * single-threaded inside kin_init and forks a child on request. The fork
 * is a clone with CLONE_PARENT, so the new process is the node's own child
 * (a sibling of the zygote): reaped, signalled and tied to the broker
 * thread by PR_SET_PDEATHSIG exactly as an exec'd child. docs/supervision.md
 * says what a forked child inherits. */
#ifndef KIN_PROCESS_ZYGOTE_H
#define KIN_PROCESS_ZYGOTE_H

#include <sys/types.h>

#include <kin/process.h>

#include "process/procs.h"

/* The zygote's control socket, in its environment (stripped from the
 * environment of every child, like every KIN_CHILD_* name). */
#define KIN__ENV_ZYGOTE KIN__ENV_PREFIX "ZYGOTE"

typedef struct kin__zygote kin__zygote;

/* kin_init, first thing, while the process has one thread: in a zygote,
 * serves fork requests and returns only in a forked child, whose
 * KIN_CHILD_* settings are then in its environment; elsewhere returns at
 * once. */
void kin__zygote_serve(void);

/* Makes sure p's node has a running zygote, starting one (fork + exec of
 * /proc/self/exe on the broker thread) and waiting up to timeout_ms for it
 * to reach kin_init. Errors: KIN_ESPAWN (it exited before kin_init; errbuf
 * says so), KIN_ETIMEOUT, -ENOSYS (this C library cannot fork one),
 * -errno of socketpair/fork/readlink, those of kin__broker_defer. Any
 * thread except the broker's. */
kin_err kin__zygote_ensure(kin__procs *p, int timeout_ms, char *errbuf,
                           size_t errbuf_size);

/* Asks the zygote for a child whose settings are the KIN_CHILD_* entries
 * of envp and whose stdout and stderr are out_fd and err_fd (the caller
 * keeps its copies), and waits for its answer on a reply socket of its
 * own: several threads may ask at once, the zygote forks in the order the
 * requests arrive. Returns the new pid, a child of this process that the
 * caller must take in (spawn.c's spawn_job) or kill and reap, or -errno
 * (-EPIPE: the zygote is gone; -ETIMEDOUT: it did not answer in 5 s and
 * was killed). Any thread except the broker's (a stuck zygote is retired
 * through it). */
pid_t kin__zygote_fork(kin__procs *p, char *const *envp, int out_fd,
                       int err_fd);

/* Ends p's zygote and reaps it (after the node's children are stopped).
 * Any thread except the broker's; idempotent. */
void kin__zygote_stop(kin__procs *p);

#endif
