/* Child contexts as processes: spawning a local child (fork + exec of this
 * executable or another program), waiting for it, stopping it with
 * terminate-then-kill, the emergency stop of a whole tree, and kin_init,
 * which turns the program into a serving child when its parent started it.
 * Supervision (restarts) is in kin/supervisor.h. */
#ifndef KIN_PROCESS_H
#define KIN_PROCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#include <kin/defs.h>
#include <kin/err.h>
#include <kin/node.h>

/* A child exiting with this code asks for an emergency stop of the whole
 * tree (see kin_emergency_stop); it is reported as KIN_EEMERGENCY and never
 * restarted. */
#define KIN_EXIT_EMERGENCY 86

typedef struct kin_child kin_child;

/* Told that a child exited: status is a wait status (WIFEXITED /
 * WIFSIGNALED apply). Runs on the parent node's broker thread once the
 * child is reaped, before kin_child_wait callers wake, so it must be quick:
 * note the fact and wake a thread of your own. It must not block, call
 * kin_spawn, kin_child_stop, kin_child_wait or kin_child_destroy. Never
 * called for a kin_spawn that failed. */
typedef void (*kin_child_exit_fn)(kin_child *c, int status, void *arg);

/* A resource limit for a child (kin_spawn_opts.rlimits): setrlimit(resource,
 * {soft, hard}) in the child after fork, before exec. resource is an
 * RLIMIT_* constant; RLIM_INFINITY means no limit. */
typedef struct kin_rlimit {
    int resource;
    rlim_t soft;
    rlim_t hard;
} kin_rlimit;

typedef struct kin_spawn_opts {
    const char *name;    /* default "ctx-ID" */
    const char *program; /* NULL: this executable (/proc/self/exe) */
    /* argv for program (argv[0] included), NULL-terminated; NULL: {program}
     * or, for this executable, {the child's context name} (name, or
     * "ctx-ID"), which ps shows. This executable runs through
     * /proc/self/exe, so a binary replaced on disk still starts the
     * program the parent runs. */
    char *const *argv;
    int connect_timeout_ms; /* HELLO must arrive within; 0: 30000 */
    int stop_timeout_ms;    /* stop request to SIGKILL; 0: 2000 */
    int workers;            /* the child's kin_node_opts.workers; 0: default */
    /* The fork factory: start the child by forking n's zygote, a warm copy
     * of this executable that stays single-threaded inside kin_init and
     * forks on request, instead of fork + exec (no exec, no dynamic
     * loading; kin-bench's fork_* figures say what it saves). The zygote is
     * started on the first such spawn (fork + exec; within
     * connect_timeout_ms) and lives until n is destroyed; a forked child
     * is n's own child process, supervised, stopped, reaped and stopped in
     * an emergency exactly as an exec'd one. It inherits the zygote's
     * memory as main left it before kin_init (exports, globals), not n's
     * threads, sockets or keys; docs/supervision.md says what it inherits.
     * Only for this executable on this host as this user: program, argv,
     * user, host, exec and container must be NULL and via 0 or n's id
     * (else -EINVAL).
     * Errors as kin_spawn, and
     * KIN_ESPAWN when the program exits or starts a thread before reaching
     * kin_init, -ENOSYS when the C library does not allow it. false: exec. */
    bool fork;
    /* With fork: the child will fork children of its own (spawn with fork
     * itself). It then forks its node's zygote from its own start, while
     * it is still single-threaded (a copy of n's zygote, warm already),
     * instead of starting one by exec on its first forked spawn (an exec
     * and dynamic loading, ~5 ms of CPU). Costs one idle process beside
     * the child (ended with it); docs/supervision.md says what it
     * inherits. Without fork: -EINVAL. */
    bool forks_children;
    /* Run the child as this user, through `sudo -n -u USER` (the sudo
     * factory). The parent must be bound on tcp (kin_node_opts.bind): the
     * default ipc endpoint lives in a 0700 directory another user cannot
     * enter. NULL: this user. */
    const char *user;
    /* The ssh factory: start the child on another host through the system
     * ssh client (BatchMode: keys or an agent, never a prompt), host being
     * "[user@]host" as ssh takes it. program is then a path on that host;
     * NULL streams this executable there over the ssh channel into a
     * private temporary file (zero-install: the same architecture and
     * shared libraries are assumed; a mismatch fails with the remote
     * loader's message in errbuf). The link to the parent, and the log
     * records, run through the ssh connection (forwarded unix sockets), or
     * straight over tcp+CURVE when n is bound on tcp on a real address. A
     * connection sshd drops before login (MaxStartups) is tried again, up
     * to 5 more times over some 3-6 s. NULL: this host. See
     * docs/remote.md. */
    const char *host;
    int ssh_port;             /* ssh -p; 0: ssh's default */
    const char *ssh_identity; /* ssh -i FILE; NULL: ssh's default */
    char *const *ssh_args;    /* more ssh arguments, NULL-terminated */
    /* The exec factory: start the child through a command that runs a
     * program on the target with its stdin and stdout connected, given as
     * an argument prefix (NULL-terminated; the first word is looked up in
     * PATH): {"podman", "exec", "-i", "web", NULL}, {"unshare", "--net",
     * "--", NULL}, {"nsenter", "-t", "PID", "-n", "--", NULL}, {"chroot",
     * "DIR", NULL}. kin appends `/bin/sh -c BOOTSTRAP kin-boot ARGS`. The
     * link to the parent and the log records ride that stdin and stdout
     * (no network or shared filesystem needed on the target), this
     * executable is streamed in when program is NULL (zero-install, as
     * over ssh), and the child's stdout lines arrive as its stderr. pid is
     * the command's. A command not in PATH: -ENOENT at once; one that
     * prints on its stdout: KIN_ESPAWN. With host, user or via: -EINVAL.
     * See docs/remote.md.
     * NULL: not through a command. */
    char *const *exec;
    /* The exec factory's presets, "TOOL:NAME": "podman:NAME" and
     * "docker:NAME" (`TOOL exec -i NAME`), "kubectl:POD" (`kubectl exec
     * -i POD --`). With exec: -EINVAL. NULL: none. */
    const char *container;
    /* Start the child from context `via` of this tree instead of from n:
     * it becomes via's child, on another host (host is required: a
     * grandchild on a host only via can reach, say). The returned
     * kin_child then stands for it remotely: stop, wait and destroy work
     * through via, on_exit is not supported (-EINVAL) and the pid is the
     * one on via's host. A context running as another user than its
     * parent (user) refuses (KIN_EREFUSED). 0: n itself. */
    uint32_t via;
    /* Resource limits set in the child before exec (n_rlimits of them;
     * each as setrlimit takes it, so a hard limit above this process's
     * needs CAP_SYS_RESOURCE). A resource out of range or soft > hard:
     * -EINVAL at once; a limit the kernel refuses: -EPERM or -EINVAL
     * from the child, with errbuf naming the resource. */
    const kin_rlimit *rlimits;
    size_t n_rlimits;
    /* The child's working directory (chdir before exec). Missing: -ENOENT
     * at once, not a directory: -ENOTDIR, errbuf saying which. NULL: this
     * process's. */
    const char *cwd;
    /* More environment variables for the child, "NAME=VALUE" each,
     * NULL-terminated: they replace this process's variables of the same
     * name. An entry without '=' or an empty name, or one naming a
     * KIN_CHILD_* variable: -EINVAL. NULL: none.
     * rlimits, cwd and env are for a child this process forks and execs:
     * with fork, user, host, exec, container or via: -EINVAL. */
    char *const *env;
    /* A memory cgroup of its own for the child, limited to memory_max
     * bytes (and as much memory plus swap): when it allocates past that,
     * its cgroup's OOM killer ends it with SIGKILL (an exit like any
     * other; never the machine's global OOM killer). Made under this
     * process's own memory cgroup (cgroup v1 memory controller) as
     * kin-PID-ID before the fork, joined by the child before exec,
     * removed when the child is reaped. No memory controller here:
     * -ENOTSUP; no right to make one: -EACCES / -EPERM, at once. As rlimits
     * for the factories. 0: none. */
    uint64_t memory_max;
    /* Optional: on failure, a description ending with the tail of the
     * child's stderr. */
    char *errbuf;
    size_t errbuf_size;
    kin_child_exit_fn on_exit; /* optional, see kin_child_exit_fn */
    void *on_exit_arg;
} kin_spawn_opts;

/* Initialises kin for this program. Started by a kin parent (the
 * environment says so: KIN_CHILD_ENDPOINT, KIN_CHILD_ID and the other
 * KIN_CHILD_* settings, which override opts; opts->bind is ignored), it
 * connects to the parent, serves calls and never returns: the process
 * exits with 0 when the parent asks it to stop, with 3 when the link to
 * the parent is lost, with KIN_EXIT_EMERGENCY after an emergency stop (its
 * own children are stopped first), and with 1 after printing one line to
 * stderr (which the parent captures) when it cannot reach the parent.
 * Otherwise it creates the master context (opts may be NULL) into *out and
 * returns. Export functions before calling it. Errors (master only): as
 * kin_node_new. Main thread, once. */
KIN_EXPORT kin_err kin_init(kin_node **out, const kin_node_opts *opts);

/* Whether this process was started as a kin child (KIN_CHILD_ENDPOINT is
 * set), or as a zygote that forks children (kin_spawn_opts.fork): either
 * way kin_init serves and never returns. Any thread. */
KIN_EXPORT bool kin_started_as_child(void);

/* Starts a child context and returns once its HELLO arrived. The child's
 * ids, the parent endpoint and its settings travel in its environment,
 * never in argv. The child runs in a process group of its own, dies with
 * SIGKILL if the thread that forked it (n's broker thread) dies, and its
 * stdout/stderr lines go to the diagnostics hook tagged with its name and
 * id, and become log records (KIN_LOGREC_STDOUT at info, KIN_LOGREC_STDERR
 * at warning) when n publishes logs. The fork runs on n's broker thread,
 * which waits until the child has exec'd: concurrent spawns of one node
 * are serialised there (a forked spawn asks the zygote from the calling
 * thread instead: concurrent ones meet in the zygote). Errors: -ENOENT /
 * -EACCES (program missing or not executable: at once), -ENOEXEC (a file the
 * kernel cannot run, such as an executable text file without a #! line: at
 * once), KIN_ESPAWN (the child exited before HELLO), KIN_ETIMEOUT (no HELLO
 * within connect_timeout_ms; the child is stopped), KIN_EEMERGENCY (n is in an
 * emergency stop), -EDEADLK (called on n's broker thread), those of
 * kin_node_alloc_id (a child context asks the master for ids), -ENOMEM, -errno
 * from fork/pipe/pidfd_open and from readlink("/proc/self/exe"). opts->errbuf
 * then says why, ending with the child's last stderr lines. On error *out is
 * NULL, no process remains and on_exit never runs. On success the caller owns
 * *out (kin_child_destroy). Any thread except n's broker thread. */
KIN_EXPORT kin_err kin_spawn(kin_node *n, const kin_spawn_opts *opts,
                             kin_child **out);

/* The child's context id, pid and name (owned by c). Any thread. */
KIN_EXPORT uint32_t kin_child_id(const kin_child *c);
KIN_EXPORT pid_t kin_child_pid(const kin_child *c);
KIN_EXPORT const char *kin_child_name(const kin_child *c);

/* Waits up to timeout_ms (KIN_FOREVER: no limit) for the child to exit and
 * be reaped. *status (optional) gets its wait status. Errors: KIN_ETIMEOUT;
 * KIN_EEMERGENCY when it exited with KIN_EXIT_EMERGENCY (*status is set
 * too). Any thread except the parent's broker thread. */
KIN_EXPORT kin_err kin_child_wait(kin_child *c, int timeout_ms, int *status);

/* Whether the child has exited and been reaped. Any thread. */
KIN_EXPORT bool kin_child_exited(kin_child *c);

/* Stops the child: asks it over the wire (when its link is up) and, after
 * a quarter of stop_timeout_ms, sends SIGTERM to its process group; once
 * stop_timeout_ms has passed since the call, a broker timer sends SIGKILL;
 * then it is reaped (with whatever it left in its process group). Returns
 * when it is gone. *status and errors as kin_child_wait, never
 * KIN_ETIMEOUT; KIN_ESHUTDOWN if the node is being destroyed meanwhile.
 * Any thread except the parent's broker thread. */
KIN_EXPORT kin_err kin_child_stop(kin_child *c, int *status);

/* The end of what the child wrote to stderr: the parent keeps the last
 * 2048 bytes (lines as they arrive, each ending in a newline), and this
 * copies the newest size - 1 of them and a NUL into buf; returns how many
 * it copied. size 0: writes nothing, returns 0. Any thread. */
KIN_EXPORT size_t kin_child_stderr_tail(kin_child *c, char *buf, size_t size);

/* Stops the child if it still runs and frees it; *c = NULL. NULL-safe.
 * May follow kin_node_destroy of its parent node (the child was stopped
 * then). Any thread except the parent's broker thread. */
KIN_EXPORT void kin_child_destroy(kin_child **c);

/* Emergency stop of the whole tree. n trips (once; it stays tripped):
 * every child process of n gets SIGTERM to its process group at once and
 * SIGKILL after its stop_timeout_ms, n's supervisors stop their children
 * and never restart them, and kin_spawn on n fails with KIN_EEMERGENCY.
 * When n is a serving child (kin_init), it then exits with
 * KIN_EXIT_EMERGENCY, which trips its parent in turn, and so on up to the
 * master, whose application learns it from kin_emergency_stopped /
 * kin_emergency_wait (and its supervisors' events). A child of n exiting
 * with KIN_EXIT_EMERGENCY trips n the same way. Returns once the stop is
 * under way. Errors: KIN_ESHUTDOWN (n is being destroyed), -ENOMEM. Any
 * thread. */
KIN_EXPORT kin_err kin_emergency_stop(kin_node *n);

/* Whether n has tripped; *origin (optional) gets the id of the child whose
 * KIN_EXIT_EMERGENCY tripped it, or n's own id for kin_emergency_stop. Any
 * thread. */
KIN_EXPORT bool kin_emergency_stopped(kin_node *n, uint32_t *origin);

/* Waits up to timeout_ms (KIN_FOREVER: no limit) until n has tripped and
 * every child process of n has exited. Errors: KIN_ETIMEOUT. Any thread
 * except n's broker thread. */
KIN_EXPORT kin_err kin_emergency_wait(kin_node *n, int timeout_ms);

#endif
