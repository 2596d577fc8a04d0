/* The raw zmq side of kin-bench's baselines (see zrouter.h). */
#include "tests/bench/zrouter.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <zmq.h>

int
zrouter_open(zrouter *r, int timeout_ms)
{
    *r = (zrouter){0};
    snprintf(r->dir, sizeof r->dir, "/tmp/kin-bench-XXXXXX");
    if (!mkdtemp(r->dir)) {
        r->dir[0] = 0;
        return -1;
    }
    snprintf(r->ep, sizeof r->ep, "ipc://%s/zmq.sock", r->dir);
    r->ctx = zmq_ctx_new();
    r->sock = r->ctx ? zmq_socket(r->ctx, ZMQ_ROUTER) : NULL;
    if (!r->sock)
        return -1;
    int one = 1, linger = 0;
    zmq_setsockopt(r->sock, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    zmq_setsockopt(r->sock, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms);
    zmq_setsockopt(r->sock, ZMQ_SNDTIMEO, &timeout_ms, sizeof timeout_ms);
    zmq_setsockopt(r->sock, ZMQ_LINGER, &linger, sizeof linger);
    return zmq_bind(r->sock, r->ep);
}

void
zrouter_close(zrouter *r)
{
    if (r->sock)
        zmq_close(r->sock);
    if (r->ctx)
        zmq_ctx_term(r->ctx);
    r->sock = r->ctx = NULL;
    if (r->dir[0]) {
        char path[128];
        snprintf(path, sizeof path, "%s/zmq.sock", r->dir);
        unlink(path);
        rmdir(r->dir);
        r->dir[0] = 0;
    }
}

/* [rid][body] from the ROUTER (blocking up to its timeout): the body's
 * size, or -1. */
int
zrouter_recv(zrouter *r, uint8_t *rid, size_t *rid_len, void *body, size_t cap)
{
    int n = zmq_recv(r->sock, rid, ZROUTER_RID_MAX, 0);
    if (n < 0)
        return -1;
    *rid_len = (size_t)n;
    int more = 0;
    size_t sz = sizeof more;
    zmq_getsockopt(r->sock, ZMQ_RCVMORE, &more, &sz);
    if (!more)
        return -1;
    return zmq_recv(r->sock, body, cap, 0);
}

int
zrouter_send(zrouter *r, const uint8_t *rid, size_t rid_len, const void *body,
             size_t len)
{
    if (zmq_send(r->sock, rid, rid_len, ZMQ_SNDMORE) < 0 ||
        zmq_send(r->sock, body, len, 0) < 0)
        return -1;
    return 0;
}

/* Starts `self argv1 ep [arg [arg2]]` (fd 0: fd0 when >= 0), dying with
 * us. */
pid_t
zrouter_start_self(const char *self, const char *argv1, const char *ep,
                   const char *arg, const char *arg2, int fd0)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    /* Only async-signal-safe calls between fork and exec. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    if (fd0 >= 0 && dup2(fd0, 0) < 0)
        _exit(127);
    char *argv[] = {"kin-bench", (char *)argv1, (char *)ep,
                    (char *)arg, (char *)arg2,  NULL};
    execv(self, argv);
    _exit(127);
}

int
zrouter_echo_peer(const char *endpoint, const void *hello, size_t len)
{
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 1000, rc = 1;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_connect(s, endpoint) || zmq_send(s, hello, len, 0) != (int)len)
        goto out;
    for (;;) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, s, 0) < 0 || zmq_msg_size(&m) == 0 ||
            zmq_msg_send(&m, s, 0) < 0) {
            rc = zmq_msg_size(&m) == 0 ? 0 : 1;
            zmq_msg_close(&m);
            break;
        }
    }
out:
    zmq_close(s);
    zmq_ctx_term(ctx);
    return rc;
}
