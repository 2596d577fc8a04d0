/* A fault-injecting TCP relay for the network-fault test: this kernel has no
 * netem qdisc, so delay and jitter come from a process in the path. It
 * joins its stdin/stdout to a TCP connection to HOST:PORT (which makes it
 * fit ssh's ProxyCommand) and holds every chunk it reads, in each
 * direction, for DELAY_MS plus a random 0..JITTER_MS before passing it on.
 * A stream keeps its order: a chunk never leaves before the one read
 * before it.
 *
 *   fault_relay DELAY_MS JITTER_MS HOST PORT
 *   ssh -o 'ProxyCommand=fault_relay 40 20 %h %p' ...
 *
 * It ends when both directions have ended. Test code only. */
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct chunk {
    struct chunk *next;
    double due_ms; /* monotonic time to pass it on; len 0: end of stream */
    size_t len;
    char data[];
} chunk;

typedef struct pipe_dir {
    int in, out;
    int shut_out; /* for the socket: shutdown(SHUT_WR) at end of stream */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    chunk *head, *tail;
    double last_due;
} pipe_dir;

static int delay_ms, jitter_ms;

static double
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void
push(pipe_dir *p, const char *data, size_t len)
{
    chunk *c = malloc(sizeof *c + len);
    if (!c)
        abort();
    memcpy(c->data, data, len);
    c->len = len;
    c->next = NULL;
    double due = now_ms() + delay_ms +
                 (jitter_ms ? (double)(rand() % (jitter_ms + 1)) : 0.0);
    pthread_mutex_lock(&p->lock);
    if (due < p->last_due)
        due = p->last_due; /* order first */
    p->last_due = c->due_ms = due;
    if (p->tail)
        p->tail->next = c;
    else
        p->head = c;
    p->tail = c;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

static void *
reader(void *arg)
{
    pipe_dir *p = arg;
    char buf[16384];
    for (;;) {
        ssize_t n = read(p->in, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        push(p, buf, n > 0 ? (size_t)n : 0);
        if (n <= 0)
            return NULL;
    }
}

static void *
writer(void *arg)
{
    pipe_dir *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->lock);
        while (!p->head)
            pthread_cond_wait(&p->cond, &p->lock);
        chunk *c = p->head;
        p->head = c->next;
        if (!p->head)
            p->tail = NULL;
        pthread_mutex_unlock(&p->lock);
        double wait = c->due_ms - now_ms();
        if (wait > 0) {
            struct timespec ts = {
                (time_t)(wait / 1e3),
                (long)((wait - (long)(wait / 1e3) * 1e3) * 1e6)};
            while (nanosleep(&ts, &ts) && errno == EINTR) {
            }
        }
        if (!c->len) {
            free(c);
            if (p->shut_out)
                shutdown(p->out, SHUT_WR);
            else
                close(p->out);
            return NULL;
        }
        for (size_t off = 0; off < c->len;) {
            ssize_t n = write(p->out, c->data + off, c->len - off);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                _exit(1); /* the far end is gone: so is the stream */
            off += (size_t)n;
        }
        free(c);
    }
}

int
main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s DELAY_MS JITTER_MS HOST PORT\n", argv[0]);
        return 2;
    }
    delay_ms = atoi(argv[1]);
    jitter_ms = atoi(argv[2]);
    srand((unsigned)getpid());
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    int rc = getaddrinfo(argv[3], argv[4], &hints, &ai);
    if (rc) {
        fprintf(stderr, "fault_relay: %s: %s\n", argv[3], gai_strerror(rc));
        return 1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen)) {
        fprintf(stderr, "fault_relay: connect %s:%s: %s\n", argv[3], argv[4],
                strerror(errno));
        return 1;
    }
    freeaddrinfo(ai);
    static pipe_dir up = {.in = 0,
                          .shut_out = 1,
                          .lock = PTHREAD_MUTEX_INITIALIZER,
                          .cond = PTHREAD_COND_INITIALIZER},
                    down = {.out = 1,
                            .lock = PTHREAD_MUTEX_INITIALIZER,
                            .cond = PTHREAD_COND_INITIALIZER};
    up.out = fd;
    down.in = fd;
    pthread_t t[4];
    pthread_create(&t[0], NULL, reader, &up);
    pthread_create(&t[1], NULL, writer, &up);
    pthread_create(&t[2], NULL, reader, &down);
    pthread_create(&t[3], NULL, writer, &down);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    return 0;
}
