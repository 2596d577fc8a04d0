/* A child's stdout and stderr, captured line by line on its parent's
 * broker loop: each line becomes a diagnostic and a log record tagged with
 * the child's name and id, and the last stderr bytes are kept for the
 * error a failed spawn reports. */
#include <errno.h>
#include <pthread.h>
#include <unistd.h>

#include "core/log_internal.h"
#include "logs/logs.h"
#include "process/child.h"
#include "process/procs.h"
#include "router/router.h"

static void
tail_append(kin_child *c, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        c->tail[c->tail_pos] = s[i];
        c->tail_pos = (c->tail_pos + 1) % TAIL_SIZE;
        if (c->tail_len < TAIL_SIZE)
            c->tail_len++;
    }
}

static void
emit_line(outpipe *p)
{
    kin_child *c = p->c;
    if (p->is_err) {
        pthread_mutex_lock(&c->procs->mu);
        tail_append(c, p->line, p->len);
        tail_append(c, "\n", 1);
        pthread_mutex_unlock(&c->procs->mu);
    }
    kin_diag_emit(p->is_err ? KIN_LOG_WARNING : KIN_LOG_INFO, c->name,
                  (int)c->id, "[%s %u %s] %.*s", c->name, c->id,
                  p->is_err ? "stderr" : "stdout", (int)p->len, p->line);
    kin__logs_child_line(c->node, c->id, c->name, p->is_err, p->line, p->len);
    p->len = 0;
}

static void
on_pipe_closed(uv_handle_t *h)
{
    outpipe *p = h->data;
    kin__child_handle_closed(p->c);
}

void
kin__output_stop(outpipe *p)
{
    if (p->polling) {
        uv_close((uv_handle_t *)&p->poll, on_pipe_closed);
        p->polling = false;
    }
    if (p->fd >= 0) {
        close(p->fd);
        p->fd = -1;
    }
}

/* Reads what is there; lines longer than the buffer are split. */
void
kin__output_drain(outpipe *p)
{
    char buf[4096];
    for (;;) {
        ssize_t got = read(p->fd, buf, sizeof buf);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            if (got == 0 || errno != EAGAIN) {
                if (p->len)
                    emit_line(p);
                kin__output_stop(p);
            }
            return;
        }
        for (ssize_t i = 0; i < got; i++) {
            if (buf[i] == '\n') {
                emit_line(p);
                continue;
            }
            p->line[p->len++] = buf[i];
            if (p->len == sizeof p->line)
                emit_line(p);
        }
    }
}

static void
on_output(uv_poll_t *h, int status, int events)
{
    kin__output_drain(h->data);
}

void
kin__output_watch(kin_child *c, outpipe *p, int fd, bool is_err)
{
    p->c = c;
    p->fd = fd;
    p->is_err = is_err;
    if (uv_poll_init(kin__broker_loop(kin__node_broker(c->node)), &p->poll,
                     fd) == 0) {
        p->poll.data = p;
        p->polling = true;
        c->handles++;
        uv_poll_start(&p->poll, UV_READABLE | UV_DISCONNECT, on_output);
    }
}

size_t
kin_child_stderr_tail(kin_child *c, char *buf, size_t size)
{
    if (!size)
        return 0;
    pthread_mutex_t *mu = c->node ? &c->procs->mu : NULL;
    if (mu)
        pthread_mutex_lock(mu);
    size_t len = c->tail_len < size - 1 ? c->tail_len : size - 1;
    size_t start = (c->tail_pos + TAIL_SIZE - len) % TAIL_SIZE;
    for (size_t i = 0; i < len; i++)
        buf[i] = c->tail[(start + i) % TAIL_SIZE];
    buf[len] = 0;
    if (mu)
        pthread_mutex_unlock(mu);
    return len;
}
