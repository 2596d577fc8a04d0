/* A tcp proxy that cuts one side only (cut_proxy.h). */
#include "integration/cut_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

static void
proxy_cut_all(proxy *x)
{
    for (int i = 0; i < PAIRS_MAX; i++)
        if (x->cl[i] >= 0 && !x->cut[i]) {
            close(x->cl[i]);
            x->cl[i] = -1;
            x->cut[i] = true; /* x->sv[i] open, never read again */
        }
    atomic_fetch_add(&x->cuts_done, 1);
}

static bool
forward(int from, int to)
{
    char buf[16384];
    ssize_t got = read(from, buf, sizeof buf);
    if (got <= 0)
        return false;
    for (ssize_t off = 0; off < got;) {
        ssize_t put = write(to, buf + off, (size_t)(got - off));
        if (put <= 0)
            return false;
        off += put;
    }
    return true;
}

static void *
proxy_main(void *arg)
{
    proxy *x = arg;
    while (!atomic_load(&x->stop)) {
        if (atomic_exchange(&x->cut_now, false))
            proxy_cut_all(x);
        struct pollfd pf[1 + 2 * PAIRS_MAX];
        int map[1 + 2 * PAIRS_MAX], np = 0;
        pf[np] = (struct pollfd){.fd = x->lfd, .events = POLLIN};
        map[np++] = -1;
        for (int i = 0; i < PAIRS_MAX; i++) {
            if (x->cl[i] < 0)
                continue;
            pf[np] = (struct pollfd){.fd = x->cl[i], .events = POLLIN};
            map[np++] = i;
            pf[np] = (struct pollfd){.fd = x->sv[i], .events = POLLIN};
            map[np++] = PAIRS_MAX + i;
        }
        if (poll(pf, (nfds_t)np, 20) <= 0)
            continue;
        if (pf[0].revents & POLLIN) {
            int c = accept(x->lfd, NULL, NULL);
            int slot = -1;
            for (int i = 0; i < PAIRS_MAX && slot < 0; i++)
                if (x->cl[i] < 0 && !x->cut[i])
                    slot = i;
            int sv = c >= 0 && slot >= 0 ? socket(AF_INET, SOCK_STREAM, 0) : -1;
            struct sockaddr_in to = {.sin_family = AF_INET,
                                     .sin_port =
                                         htons((uint16_t)x->target_port),
                                     .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
            if (sv >= 0 && !connect(sv, (struct sockaddr *)&to, sizeof to)) {
                x->cl[slot] = c;
                x->sv[slot] = sv;
            } else {
                if (sv >= 0)
                    close(sv);
                if (c >= 0)
                    close(c);
            }
        }
        for (int k = 1; k < np; k++) {
            if (!(pf[k].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            int i = map[k] % PAIRS_MAX;
            if (x->cl[i] < 0)
                continue; /* closed earlier in this round */
            bool ok = map[k] < PAIRS_MAX ? forward(x->cl[i], x->sv[i])
                                         : forward(x->sv[i], x->cl[i]);
            if (!ok) { /* either side closed: both go */
                close(x->cl[i]);
                close(x->sv[i]);
                x->cl[i] = x->sv[i] = -1;
            }
        }
    }
    for (int i = 0; i < PAIRS_MAX; i++) {
        if (x->cl[i] >= 0)
            close(x->cl[i]);
        if (x->sv[i] >= 0)
            close(x->sv[i]);
    }
    return NULL;
}

void
proxy_start(proxy *x, int target_port)
{
    memset(x, 0, sizeof *x);
    for (int i = 0; i < PAIRS_MAX; i++)
        x->cl[i] = x->sv[i] = -1;
    x->target_port = target_port;
    x->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(x->lfd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(x->lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(x->lfd, 16), 0);
    assert_int_equal(getsockname(x->lfd, (struct sockaddr *)&a, &len), 0);
    x->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&x->thread, NULL, proxy_main, x), 0);
}

void
proxy_stop(proxy *x)
{
    if (!x->lfd)
        return;
    atomic_store(&x->stop, true);
    pthread_join(x->thread, NULL);
    close(x->lfd);
    x->lfd = 0;
}
