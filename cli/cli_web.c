/* kin web: a small HTTP server (libmicrohttpd) showing a tree in a
 * browser: one page (cli/web_page.html, embedded at build time) that polls
 * JSON under /api/ -- exactly what `kin … --json` prints, since each
 * answer runs this command again (cli/web_run.c) -- and /metrics, the text
 * of `kin metrics`. Every request needs the token printed at start (in
 * the URL's query, or the cookie the page's answer sets); cancel and
 * signal are POSTs that also need an X-Kin-Action header. */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/web_run.h"

#define RUN_TIMEOUT_MS 10000

/* cli/web_page.html, as the build embedded it (web_page.c). */
extern const unsigned char kin__web_page[];
extern const size_t kin__web_page_len;

typedef struct web {
    int pid;
    char pid_s[16];
    char token[33];
    bool log; /* --log: each request on stderr */
} web;

static volatile sig_atomic_t stop;

static void
on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static enum MHD_Result
reply(struct MHD_Connection *c, unsigned code, const char *type,
      const char *body, size_t len, const char *cookie)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    if (cookie)
        MHD_add_response_header(r, "Set-Cookie", cookie);
    enum MHD_Result ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result
reply_text(struct MHD_Connection *c, unsigned code, const char *text)
{
    return reply(c, code, "text/plain; charset=utf-8", text, strlen(text),
                 NULL);
}

/* Compares without stopping at the first difference. */
static bool
same_token(const char *a, const char *b)
{
    if (!a || strlen(a) != strlen(b))
        return false;
    unsigned char d = 0;
    for (size_t i = 0; b[i]; i++)
        d |= (unsigned char)(a[i] ^ b[i]);
    return !d;
}

static bool
all_of(const char *s, const char *set, size_t max)
{
    return s && *s && strlen(s) <= max && strspn(s, set) == strlen(s);
}

/* Runs `kin ARGS...` and answers with its output: 200 when it exits with
 * one of ok_a, ok_b, else 502. */
static enum MHD_Result
run(struct MHD_Connection *c, const char *type, char *const argv[], int ok_a,
    int ok_b)
{
    char *out;
    size_t len;
    int status;
    int e = kin__web_run(argv, RUN_TIMEOUT_MS, &out, &len, &status);
    if (e) {
        char why[96];
        snprintf(why, sizeof why, "cannot run kin %s: %s\n", argv[1],
                 strerror(-e));
        return reply_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, why);
    }
    enum MHD_Result ret;
    if (status == ok_a || status == ok_b) {
        ret = reply(c, MHD_HTTP_OK, type, out, len, NULL);
    } else {
        char why[96];
        snprintf(why, sizeof why, "kin %s failed (exit status %d)\n", argv[1],
                 status);
        ret = reply_text(c, MHD_HTTP_BAD_GATEWAY, why);
    }
    free(out);
    return ret;
}

static const char *
arg(struct MHD_Connection *c, const char *key)
{
    return MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, key);
}

static enum MHD_Result
get(web *w, struct MHD_Connection *c, const char *url, bool via_query)
{
    static const char json[] = "application/json";
    static const char lines[] = "application/x-ndjson";
    char *pid = w->pid_s;
    if (!strcmp(url, "/")) {
        char cookie[96];
        snprintf(cookie, sizeof cookie,
                 "kin_token=%s; Path=/; HttpOnly; SameSite=Strict", w->token);
        return reply(c, MHD_HTTP_OK, "text/html; charset=utf-8",
                     (const char *)kin__web_page, kin__web_page_len,
                     via_query ? cookie : NULL);
    }
    if (!strcmp(url, "/api/tree"))
        return run(c, json, (char *[]){"kin", "tree", pid, "--json", NULL}, 0,
                   0);
    if (!strcmp(url, "/api/tasks")) {
        const char *ctx = arg(c, "ctx"), *filter = arg(c, "filter");
        char *argv[9] = {"kin", "ps", pid, "--json"};
        int k = 4;
        if (ctx) {
            if (!all_of(ctx, "0123456789", 10))
                return reply_text(c, MHD_HTTP_BAD_REQUEST, "bad ctx\n");
            argv[k++] = "-c";
            argv[k++] = (char *)ctx;
        }
        if (filter && *filter) {
            argv[k++] = "-f";
            argv[k++] = (char *)filter;
        }
        return run(c, json, argv, 0, 0);
    }
    if (!strcmp(url, "/api/pstree")) /* 1: it found a deadlock */
        return run(c, json, (char *[]){"kin", "pstree", pid, "--json", NULL}, 0,
                   1);
    if (!strcmp(url, "/api/services"))
        return run(c, json, (char *[]){"kin", "services", pid, "--json", NULL},
                   0, 0);
    if (!strcmp(url, "/api/metrics"))
        return run(c, json, (char *[]){"kin", "metrics", pid, "--json", NULL},
                   0, 0);
    if (!strcmp(url, "/api/terminated"))
        return run(c, json,
                   (char *[]){"kin", "ps-terminated", pid, "--json", NULL}, 0,
                   0);
    if (!strcmp(url, "/api/logs")) {
        const char *level = arg(c, "level"), *n = arg(c, "lines");
        if (level && !all_of(level, "abcdefghijklmnopqrstuvwxyz0123456789", 9))
            return reply_text(c, MHD_HTTP_BAD_REQUEST, "bad level\n");
        if (n && !all_of(n, "0123456789", 6))
            return reply_text(c, MHD_HTTP_BAD_REQUEST, "bad lines\n");
        return run(c, lines,
                   (char *[]){"kin", "logs", pid, "-n", (char *)(n ? n : "100"),
                              "-l", (char *)(level ? level : "info"), "-w",
                              "200", "--json", "--color", "never", NULL},
                   0, 0);
    }
    if (!strcmp(url, "/api/events"))
        return run(c, lines,
                   (char *[]){"kin", "logs", pid, "-n", "100", "-g", "child.",
                              "-w", "200", "--json", "--color", "never", NULL},
                   0, 0);
    if (!strcmp(url, "/metrics"))
        return run(c, "text/plain; version=0.0.4; charset=utf-8",
                   (char *[]){"kin", "metrics", pid, NULL}, 0, 0);
    return reply_text(c, MHD_HTTP_NOT_FOUND, "no such page\n");
}

static enum MHD_Result
post(web *w, struct MHD_Connection *c, const char *url)
{
    /* A header a form or a plain cross-site request cannot carry. */
    if (!MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Kin-Action"))
        return reply_text(c, MHD_HTTP_FORBIDDEN, "X-Kin-Action missing\n");
    char *pid = w->pid_s;
    static const char text[] = "text/plain; charset=utf-8";
    if (!strcmp(url, "/api/cancel")) {
        const char *task = arg(c, "task");
        if (!all_of(task, "0123456789:", 21) || !strchr(task, ':'))
            return reply_text(c, MHD_HTTP_BAD_REQUEST, "bad task\n");
        return run(c, text,
                   (char *[]){"kin", "cancel", pid, (char *)task, NULL}, 0, 0);
    }
    if (!strcmp(url, "/api/signal")) {
        const char *ctx = arg(c, "ctx"), *sig = arg(c, "signal");
        if (!all_of(ctx, "0123456789", 10) ||
            !all_of(sig, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 10))
            return reply_text(c, MHD_HTTP_BAD_REQUEST, "bad ctx or signal\n");
        return run(
            c, text,
            (char *[]){"kin", "signal", pid, (char *)ctx, (char *)sig, NULL}, 0,
            0);
    }
    return reply_text(c, MHD_HTTP_NOT_FOUND, "no such action\n");
}

static enum MHD_Result
handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
       const char *version, const char *upload, size_t *upload_size,
       void **state)
{
    (void)version;
    (void)upload;
    web *w = cls;
    if (!*state) { /* headers only so far */
        *state = w;
        return MHD_YES;
    }
    if (*upload_size) { /* a body is not used: the query says it all */
        *upload_size = 0;
        return MHD_YES;
    }
    if (w->log)
        fprintf(stderr, "kin web: %s %s\n", method, url);
    const char *q = arg(c, "token");
    bool via_query = same_token(q, w->token);
    if (!via_query && !same_token(MHD_lookup_connection_value(
                                      c, MHD_COOKIE_KIND, "kin_token"),
                                  w->token))
        return reply_text(c, MHD_HTTP_FORBIDDEN,
                          "kin web: a token is needed (the URL kin web "
                          "printed)\n");
    if (!strcmp(method, "GET") || !strcmp(method, "HEAD"))
        return get(w, c, url, via_query);
    if (!strcmp(method, "POST"))
        return post(w, c, url);
    return reply_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "GET or POST\n");
}

static int
usage(FILE *f, int rc)
{
    fprintf(f,
            "usage: kin web PID [--listen ADDR:PORT] [--log]\n  serves a page "
            "showing the tree live (contexts, tasks, the await graph\n  with "
            "deadlocks, services, logs, events; cancel and signal), JSON "
            "under\n  /api/ as kin … --json prints it, and /metrics. Listens "
            "on 127.0.0.1:7180\n  by default (port 0: any free one) and "
            "prints a URL carrying the access\n  token; every request needs "
            "it. Runs until interrupted. --log: each request on stderr.\n");
    return rc;
}

static bool
parse_listen(const char *s, struct sockaddr_in *sa)
{
    const char *colon = strrchr(s, ':');
    char host[64];
    if (!colon || (size_t)(colon - s) >= sizeof host)
        return false;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = 0;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end || port < 0 || port > 65535)
        return false;
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    return inet_pton(AF_INET, host[0] ? host : "127.0.0.1", &sa->sin_addr) == 1;
}

int
kin__cli_web(int argc, char **argv)
{
    web w = {0};
    struct sockaddr_in sa;
    parse_listen("127.0.0.1:7180", &sa);
    for (int i = 1; i < argc; i++) {
        char *end;
        long v;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return usage(stdout, 0);
        if (!strcmp(argv[i], "--log")) {
            w.log = true;
        } else if (!strcmp(argv[i], "--listen") && i + 1 < argc) {
            if (!parse_listen(argv[++i], &sa)) {
                fprintf(stderr, "kin web: bad --listen '%s' (ADDR:PORT)\n",
                        argv[i]);
                return 2;
            }
        } else if (!w.pid && (v = strtol(argv[i], &end, 10)) > 0 && !*end) {
            w.pid = (int)v;
        } else {
            fprintf(stderr, "kin web: unexpected '%s'\n", argv[i]);
            return usage(stderr, 2);
        }
    }
    if (!w.pid)
        return usage(stderr, 2);
    /* The tree must be there and ours before anything is served. */
    kin_node *n;
    if (kin__cli_attach(w.pid, &n))
        return 2;
    kin_node_destroy(&n);
    snprintf(w.pid_s, sizeof w.pid_s, "%d", w.pid);
    unsigned char raw[16];
    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) {
        fprintf(stderr, "kin web: no random token: %s\n", strerror(errno));
        return 2;
    }
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(w.token + 2 * i, 3, "%02x", raw[i]);
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
            MHD_USE_POLL | MHD_USE_ERROR_LOG,
        0, NULL, NULL, handle, &w, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_END);
    if (!d) {
        char addr[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &sa.sin_addr, addr, sizeof addr);
        fprintf(stderr, "kin web: cannot listen on %s:%u\n", addr,
                ntohs(sa.sin_port));
        return 2;
    }
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    char addr[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &sa.sin_addr, addr, sizeof addr);
    printf("http://%s:%u/?token=%s\n", addr,
           info ? info->port : ntohs(sa.sin_port), w.token);
    fflush(stdout);
    struct sigaction act = {.sa_handler = on_signal};
    sigaction(SIGINT, &act, NULL);
    sigaction(SIGTERM, &act, NULL);
    signal(SIGPIPE, SIG_IGN);
    while (!stop)
        pause();
    MHD_stop_daemon(d);
    return 0;
}
