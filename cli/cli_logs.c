/* kin logs: the records of a running tree, one aligned (and, on a terminal,
 * colored) line each or one JSON object per line, with losses shown where
 * they happened; and kin log-forwarder, the forwarder as a process of its
 * own for trees that publish to it (kin_node_opts.log_endpoint). */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <kin/logs.h>

#include "cli/cli.h"
#include "context/tool.h"

#define WINDOW_MS 1000   /* without -f: how long to listen */
#define LAST_DEFAULT 100 /* kept records shown without -n or --since */
#define DRAIN_MS 200     /* after the tree ended: what is still on its way */
#define MAX_CTXS 64

static volatile sig_atomic_t stop;

static void
on_signal(int sig)
{
    stop = 1;
}

static const char logs_usage[] =
    "usage: kin logs PID [-n N] [--since TIME] [-l LEVEL] [-c CTX[,CTX...]]\n"
    "                [-g TEXT] [-f] [-w MS] [--json] [--color WHEN] "
    "[--endpoint EP]\n"
    "\n"
    "Shows the recent log records of the tree PID belongs to (the ones its\n"
    "forwarder keeps), then those that arrive.\n"
    "  -n, --lines N      the last N kept records (default 100; 0: none,\n"
    "                     all: every one kept)\n"
    "      --since TIME   kept records logged since TIME: 30s, 10m, 2h, 1d\n"
    "                     ago, @UNIX_SECONDS, or YYYY-MM-DDTHH:MM:SS (UTC)\n"
    "  -l, --level LEVEL  debug, info, warning, error, critical or a number\n"
    "                     (default info); the publishers send nothing below\n"
    "  -c, --ctx CTX      only these contexts (ids, comma-separated)\n"
    "  -g, --grep TEXT    only records whose message, fields or context name\n"
    "                     contain TEXT (losses are always shown)\n"
    "  -f, --follow       keep going until interrupted or until the tree\n"
    "                     ends (a last line says so)\n"
    "  -w, --window MS    without -f, listen this long after the kept records\n"
    "                     (default 1000)\n"
    "      --json         one JSON object per line\n"
    "      --color WHEN   auto (default: when stdout is a terminal), always,\n"
    "                     never\n"
    "      --endpoint EP  subscribe at EP (a forwarder's frontend) instead of\n"
    "                     asking PID's tree; a tcp:// EP needs the tree's\n"
    "                     CURVE key in KIN_CURVE_KEY (see kin keygen)\n"
    "Lost records are reported where they were lost, as '!! lost N' lines\n"
    "(and '~~ N ... before this subscriber joined' for earlier ones).\n";

/* --- filtering ------------------------------------------------------------ */

static bool
contains(const char *s, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    if (!n)
        return true;
    for (size_t i = 0; i + n <= len; i++)
        if (!memcmp(s + i, needle, n))
            return true;
    return false;
}

static bool
matches(const kin_logrec *r, const char *grep)
{
    if (!grep || r->kind == KIN_LOGREC_GAP || r->kind == KIN_LOGREC_DROPPED)
        return true;
    if (contains(r->msg, r->msg_len, grep) ||
        contains(r->ctx_name, strlen(r->ctx_name), grep))
        return true;
    for (size_t i = 0; i < r->n_fields; i++) {
        const kin_field *f = &r->fields[i];
        if (contains(f->key, strlen(f->key), grep))
            return true;
        if (f->type == KIN_FIELD_STR && contains(f->v.s.p, f->v.s.len, grep))
            return true;
        char num[48] = "";
        if (f->type == KIN_FIELD_INT)
            snprintf(num, sizeof num, "%lld", (long long)f->v.i);
        else if (f->type == KIN_FIELD_UINT)
            snprintf(num, sizeof num, "%llu", (unsigned long long)f->v.u);
        else if (f->type == KIN_FIELD_DOUBLE)
            snprintf(num, sizeof num, "%g", f->v.d);
        if (*num && contains(num, strlen(num), grep))
            return true;
    }
    return false;
}

/* --- output --------------------------------------------------------------- */

/* A JSON string; bytes that are not UTF-8 become '?'. */
static json_t *
jstr(const char *s, size_t len)
{
    json_t *j = json_stringn(s, len);
    if (j)
        return j;
    char *copy = malloc(len + 1);
    if (!copy)
        return json_null();
    for (size_t i = 0; i < len; i++)
        copy[i] = (unsigned char)s[i] < 0x80 && s[i] ? s[i] : '?';
    j = json_stringn(copy, len);
    free(copy);
    return j ? j : json_null();
}

static void
set(json_t *o, const char *key, json_t *v)
{
    json_object_set_new(o, key, v ? v : json_null());
}

/* The schema of kin_logrec_json (docs/logs.md), built with jansson. */
static json_t *
to_json(const kin_logrec *r)
{
    json_t *o = json_object();
    set(o, "version", json_integer(KIN_CLI_JSON_VERSION));
    set(o, "kind", json_string(kin_logrec_kind_name(r->kind)));
    if (r->kind != KIN_LOGREC_GAP) {
        time_t sec = (time_t)(r->wall_ns / 1000000000u);
        struct tm tm;
        gmtime_r(&sec, &tm);
        char t[64], iso[80];
        strftime(t, sizeof t, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(iso, sizeof iso, "%s.%06uZ", t,
                 (unsigned)(r->wall_ns / 1000u % 1000000u));
        set(o, "time", json_string(iso));
        set(o, "wall_ns", json_integer((json_int_t)r->wall_ns));
        set(o, "mono_ns", json_integer((json_int_t)r->mono_ns));
    }
    set(o, "level", json_string(kin_log_level_name(r->level)));
    set(o, "levelno", json_integer(r->level));
    set(o, "ctx", json_integer(r->ctx));
    set(o, "ctx_name", jstr(r->ctx_name, strlen(r->ctx_name)));
    if (r->kind != KIN_LOGREC_GAP) {
        set(o, "pid", json_integer(r->pid));
        set(o, "task", json_integer(r->task));
        set(o, "file", jstr(r->file, strlen(r->file)));
        set(o, "line", json_integer(r->line));
        set(o, "msg", jstr(r->msg, r->msg_len));
        json_t *fields = json_object();
        for (size_t i = 0; i < r->n_fields; i++) {
            const kin_field *f = &r->fields[i];
            json_t *v;
            switch (f->type) {
            case KIN_FIELD_INT:
                v = json_integer(f->v.i);
                break;
            case KIN_FIELD_UINT:
                /* jansson integers are signed 64-bit. */
                v = f->v.u <= INT64_MAX ? json_integer((json_int_t)f->v.u)
                                        : json_real((double)f->v.u);
                break;
            case KIN_FIELD_DOUBLE:
                v = json_real(f->v.d); /* NULL for NaN/inf: null */
                break;
            case KIN_FIELD_BOOL:
                v = json_boolean(f->v.b);
                break;
            case KIN_FIELD_STR:
                v = jstr(f->v.s.p, f->v.s.len);
                break;
            default:
                v = json_null();
                break;
            }
            set(fields, f->key, v);
        }
        set(o, "fields", fields);
    }
    set(o, "seq", json_integer((json_int_t)r->seq));
    set(o, "pub", json_integer(r->pub));
    set(o, "pub_ctx", json_integer(r->pub_ctx));
    if (r->kind == KIN_LOGREC_DROPPED || r->kind == KIN_LOGREC_GAP)
        set(o, "count", json_integer((json_int_t)r->count));
    if (r->kind == KIN_LOGREC_GAP)
        set(o, "before_join", json_boolean(r->before_join));
    return o;
}

static bool
print_record(const kin_logrec *r, bool json, unsigned flags)
{
    int rc;
    if (json) {
        json_t *o = to_json(r);
        char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(o);
        rc = s ? printf("%s\n", s) : 0;
        free(s);
    } else {
        char small[1024];
        size_t need = kin_logrec_format(r, flags, small, sizeof small);
        if (need < sizeof small) {
            rc = printf("%s\n", small);
        } else {
            char *big = malloc(need + 1);
            if (!big)
                return true;
            kin_logrec_format(r, flags, big, need + 1);
            rc = printf("%s\n", big);
            free(big);
        }
    }
    /* Lines go out as they come, also into a pipe (kin logs -f | grep). */
    return rc >= 0 && fflush(stdout) == 0;
}

/* --- kin logs ------------------------------------------------------------- */

/* Where publishers connect is no place to subscribe; an embedded
 * forwarder's frontend sits next to its backend (logs/logpub.c names
 * them), so a backend endpoint is turned into the frontend. */
static void
frontend_of(char *ep, size_t size)
{
    static const char in[] = "-logs-in.sock", out[] = "-logs.sock";
    size_t len = strlen(ep), n = sizeof in - 1;
    if (!strncmp(ep, "ipc://", 6) && len > n && !strcmp(ep + len - n, in))
        snprintf(ep + len - n, size - (len - n), "%s", out);
}

static int
parse_ctxs(const char *s, uint32_t *ctxs, size_t *n)
{
    while (*s) {
        char *end;
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        if (end == s || errno || v > UINT32_MAX || (*end && *end != ',') ||
            *n == MAX_CTXS)
            return -1;
        ctxs[(*n)++] = (uint32_t)v;
        s = *end ? end + 1 : end;
    }
    return 0;
}

/* --since: a wall-clock time in ns, 0 when s is none of the forms. */
static uint64_t
parse_since(const char *s)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t now_wall =
        (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
    char *end;
    if (*s == '@') {
        errno = 0;
        unsigned long long v = strtoull(s + 1, &end, 10);
        return end == s + 1 || *end || errno ? 0 : v * 1000000000ull;
    }
    if (strchr(s, '-')) {
        struct tm tm = {0};
        const char *rest = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
        if (!rest)
            rest = strptime(s, "%Y-%m-%d %H:%M:%S", &tm);
        if (!rest || (*rest && strcmp(rest, "Z")))
            return 0;
        time_t t = timegm(&tm);
        return t < 0 ? 0 : (uint64_t)t * 1000000000ull;
    }
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || errno)
        return 0;
    uint64_t unit = !strcmp(end, "s") || !*end ? 1
                    : !strcmp(end, "m")        ? 60
                    : !strcmp(end, "h")        ? 3600
                    : !strcmp(end, "d")        ? 86400
                                               : 0;
    uint64_t ago = v * unit * 1000000000ull;
    if (!unit || (unit && ago / unit / 1000000000ull != v) || ago >= now_wall)
        return unit && ago >= now_wall ? 1 : 0;
    return now_wall - ago;
}

/* The master's pid from an embedded forwarder's frontend
 * (ipc://DIR/PID-0-logs.sock, logs/logpub.c), or 0. */
static int
master_of(const char *ep)
{
    const char *base = strrchr(ep, '/');
    int pid = 0, n = 0;
    if (strncmp(ep, "ipc://", 6) || !base ||
        sscanf(base + 1, "%d-0-logs.sock%n", &pid, &n) != 1 || base[1 + n] != 0)
        return 0;
    return pid;
}

static uint64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int
kin__cli_logs(int argc, char **argv)
{
    static const struct option longs[] = {
        {"level", required_argument, NULL, 'l'},
        {"ctx", required_argument, NULL, 'c'},
        {"grep", required_argument, NULL, 'g'},
        {"follow", no_argument, NULL, 'f'},
        {"window", required_argument, NULL, 'w'},
        {"json", no_argument, NULL, 'j'},
        {"color", required_argument, NULL, 'C'},
        {"endpoint", required_argument, NULL, 'e'},
        {"lines", required_argument, NULL, 'n'},
        {"since", required_argument, NULL, 'S'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int level = KIN_LOG_INFO, window = WINDOW_MS;
    uint32_t ctxs[MAX_CTXS];
    size_t n_ctxs = 0;
    const char *grep = NULL, *endpoint = NULL, *color = "auto";
    bool follow = false, json = false;
    long lines = -2; /* not given */
    uint64_t since = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "l:c:g:fw:n:h", longs, NULL)) != -1) {
        switch (c) {
        case 'n': {
            char *end;
            errno = 0;
            lines = strtol(optarg, &end, 10);
            if (!strcmp(optarg, "all")) {
                lines = -1;
            } else if (end == optarg || *end || errno || lines < 0) {
                fprintf(stderr, "kin logs: bad -n '%s' (a count or all)\n",
                        optarg);
                return 2;
            }
            break;
        }
        case 'S':
            since = parse_since(optarg);
            if (!since) {
                fprintf(stderr,
                        "kin logs: bad --since '%s' (30s, 10m, 2h, 1d, "
                        "@UNIX_SECONDS or YYYY-MM-DDTHH:MM:SS UTC)\n",
                        optarg);
                return 2;
            }
            break;
        case 'l':
            if (kin_log_level_parse(optarg, &level)) {
                fprintf(stderr, "kin logs: bad level '%s'\n", optarg);
                return 2;
            }
            break;
        case 'c':
            if (parse_ctxs(optarg, ctxs, &n_ctxs)) {
                fprintf(stderr, "kin logs: bad context list '%s'\n", optarg);
                return 2;
            }
            break;
        case 'g':
            grep = optarg;
            break;
        case 'f':
            follow = true;
            break;
        case 'w':
            window = atoi(optarg);
            if (window <= 0) {
                fprintf(stderr, "kin logs: bad window '%s'\n", optarg);
                return 2;
            }
            break;
        case 'j':
            json = true;
            break;
        case 'C':
            color = optarg;
            if (strcmp(color, "auto") && strcmp(color, "always") &&
                strcmp(color, "never")) {
                fprintf(stderr, "kin logs: --color auto|always|never\n");
                return 2;
            }
            break;
        case 'e':
            endpoint = optarg;
            break;
        case 'h':
            fputs(logs_usage, stdout);
            return 0;
        default:
            fputs(logs_usage, stderr);
            return 2;
        }
    }
    char ep[256];
    if (endpoint) {
        snprintf(ep, sizeof ep, "%s", endpoint);
    } else {
        if (optind >= argc) {
            fputs(logs_usage, stderr);
            return 2;
        }
        char *end;
        long pid = strtol(argv[optind], &end, 10);
        if (*end || pid <= 0) {
            fprintf(stderr, "kin logs: bad PID '%s'\n", argv[optind]);
            return 2;
        }
        int e = kin__cli_log_endpoint((int)pid, ep, sizeof ep);
        if (e == -EREMOTE)
            return 2; /* said where to look */
        if (e) {
            fprintf(stderr,
                    "kin logs: no log endpoint for %ld: %s (a standalone "
                    "forwarder? use --endpoint)\n",
                    pid, kin_strerror(e));
            return 2;
        }
        frontend_of(ep, sizeof ep);
    }
    unsigned flags = 0;
    if (!strcmp(color, "always") ||
        (!strcmp(color, "auto") && isatty(STDOUT_FILENO) &&
         !getenv("NO_COLOR")))
        flags |= KIN_LOGFMT_COLOR;

    if (lines == -2)
        lines = since ? -1 : LAST_DEFAULT;
    kin_logsub_opts so = {.endpoint = ep,
                          .min_level = level,
                          .ctxs = n_ctxs ? ctxs : NULL,
                          .n_ctxs = n_ctxs,
                          .curve_key = getenv("KIN_CURVE_KEY"),
                          .history = lines,
                          .since_ns = since};
    if (!lines && since)
        so.since_ns = 0; /* -n 0: none kept, whatever the time */
    /* -f ends with the tree: its master's pidfd says when. */
    int master = follow ? master_of(ep) : 0;
    int pidfd = master > 0 ? (int)syscall(SYS_pidfd_open, master, 0) : -1;
    kin_logsub *s;
    kin_err e = kin_logsub_new(&s, &so);
    if (e) {
        fprintf(stderr, "kin logs: cannot subscribe at %s: %s\n", ep,
                kin_strerror(e));
        return 2;
    }
    /* Restored at the end: kin monitor runs this as its logs command. */
    struct sigaction sa = {.sa_handler = on_signal}, old_int, old_term,
                     old_pipe, ign = {.sa_handler = SIG_IGN};
    stop = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGPIPE, &ign, &old_pipe);

    uint64_t end = now_ns() + (uint64_t)window * 1000000u;
    bool hist_pending = true; /* the kept records are not all out yet */
    uint64_t drain_end = 0;   /* the tree ended: drain until then */
    int rc = 0;
    while (!stop) {
        if (pidfd >= 0 && !drain_end) {
            struct pollfd pf = {pidfd, POLLIN, 0};
            if (poll(&pf, 1, 0) == 1)
                drain_end = now_ns() + DRAIN_MS * 1000000ull;
        }
        if (drain_end && now_ns() >= drain_end) {
            if (json)
                fprintf(stderr, "kin logs: the tree ended (master %d exited)\n",
                        master);
            else
                printf("== the tree ended (master %d exited)\n", master);
            fflush(stdout);
            break;
        }
        uint64_t now = now_ns();
        if (!follow && hist_pending) {
            /* The window starts once the kept records are out. */
            kin_logsub_stats hs;
            kin_logsub_stats_get(s, &hs);
            hist_pending = hs.history_pending;
            end = now + (uint64_t)window * 1000000u;
        }
        if (!follow && now >= end)
            break;
        int wait = 200;
        if (!follow && (end - now) / 1000000u < (uint64_t)wait)
            wait = (int)((end - now) / 1000000u) + 1;
        const kin_logrec *r;
        e = kin_logsub_next(s, wait, &r);
        if (e == KIN_ETIMEOUT || e == -EINTR)
            continue;
        if (e) {
            fprintf(stderr, "kin logs: %s\n", kin_strerror(e));
            rc = 2;
            break;
        }
        if (matches(r, grep) && !print_record(r, json, flags))
            break; /* stdout went away */
    }
    kin_logsub_stats st;
    kin_logsub_stats_get(s, &st);
    if (st.malformed)
        fprintf(stderr, "kin logs: %llu malformed messages skipped\n",
                (unsigned long long)st.malformed);
    kin_logsub_destroy(&s);
    if (pidfd >= 0)
        close(pidfd);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGPIPE, &old_pipe, NULL);
    return rc;
}

/* --- kin log-forwarder ---------------------------------------------------- */

static const char fwd_usage[] =
    "usage: kin log-forwarder --backend EP --frontend EP [--hwm N] "
    "[--lossless]\n"
    "                         [--history N]\n"
    "\n"
    "Runs a log forwarder until SIGINT or SIGTERM.\n"
    "  --backend EP   where publishers connect (e.g. tcp://*:5555); give the\n"
    "                 tree's master kin_node_opts.log_endpoint =\n"
    "                 tcp://HOST:5555\n"
    "  --frontend EP  where subscribers connect (kin logs --endpoint EP)\n"
    "  --hwm N        records queued per peer before loss (default 10000)\n"
    "tcp:// endpoints are CURVE servers admitting only the tree's key, read\n"
    "from KIN_CURVE_KEY (\"PUBLIC:SECRET\", as printed by kin keygen; give\n"
    "the master the same kin_node_opts.curve_key).\n"
    "  --lossless     wait for slow subscribers instead of dropping their\n"
    "                 records (then the publishers' queues fill and drop,\n"
    "                 reported as usual; one stuck subscriber holds all up)\n"
    "  --history N    recent info-and-up records kept for kin logs -n and\n"
    "                 --since (default 1000; 0: none)\n"
    "Prints the bound endpoints (wildcards resolved) on stdout.\n";

int
kin__cli_log_forwarder(int argc, char **argv)
{
    static const struct option longs[] = {
        {"backend", required_argument, NULL, 'b'},
        {"frontend", required_argument, NULL, 'f'},
        {"hwm", required_argument, NULL, 'H'},
        {"lossless", no_argument, NULL, 'L'},
        {"history", required_argument, NULL, 'Y'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    kin__tool_fwd_opts o = {0};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        switch (c) {
        case 'b':
            o.backend = optarg;
            break;
        case 'f':
            o.frontend = optarg;
            break;
        case 'H':
            o.hwm = atoi(optarg);
            break;
        case 'L':
            o.lossless = true;
            break;
        case 'Y': {
            char *end;
            long n = strtol(optarg, &end, 10);
            if (end == optarg || *end || n < 0 || n > 1000000) {
                fprintf(stderr, "kin log-forwarder: bad --history '%s'\n",
                        optarg);
                return 2;
            }
            o.history = n ? (int)n : -1;
            break;
        }
        case 'h':
            fputs(fwd_usage, stdout);
            return 0;
        default:
            fputs(fwd_usage, stderr);
            return 2;
        }
    }
    if (!o.backend || !o.frontend || optind < argc) {
        fputs(fwd_usage, stderr);
        return 2;
    }
    /* Signals are taken synchronously below; every thread started from
     * here on inherits the mask. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    const char *key_text = getenv("KIN_CURVE_KEY");
    if (key_text) {
        if (!kin__tool_key_valid(key_text)) {
            fprintf(stderr, "kin log-forwarder: KIN_CURVE_KEY is not "
                            "\"PUBLIC:SECRET\" in Z85 (kin keygen)\n");
            return 2;
        }
        o.curve_key = key_text;
    } else if (kin__tool_endpoint_is_tcp(o.backend) ||
               kin__tool_endpoint_is_tcp(o.frontend)) {
        fprintf(stderr, "kin log-forwarder: tcp endpoints need the tree's "
                        "CURVE key in KIN_CURVE_KEY (see kin keygen)\n");
        return 2;
    }
    kin__tool_fwd *f;
    kin_err e = kin__tool_fwd_start(&f, &o);
    if (e) {
        fprintf(stderr, "kin log-forwarder: %s / %s: %s\n", o.backend,
                o.frontend, kin_strerror(e));
        return 2;
    }
    printf("backend %s\nfrontend %s\n", kin__tool_fwd_backend(f),
           kin__tool_fwd_frontend(f));
    fflush(stdout);
    int sig;
    sigwait(&set, &sig);
    uint64_t records = kin__tool_fwd_records(f);
    kin__tool_fwd_stop(&f);
    fprintf(stderr, "kin log-forwarder: %llu records forwarded\n",
            (unsigned long long)records);
    return 0;
}
