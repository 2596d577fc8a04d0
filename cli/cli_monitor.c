/* kin monitor PID [CTX]: an interactive monitor of a running tree (line
 * editing, history and completion with libedit). Built-in commands run the
 * kin subcommands of cli_tasks.c; other words go to the target as custom
 * monitor commands. Reads plain lines, without a prompt, when stdin is not
 * a terminal, so it can be scripted. */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <editline/readline.h>
#include <kin/monitor.h>

#include "cli/cli.h"

#define TIMEOUT_MS KIN_CLI_TIMEOUT_MS
#define COMPLETE_TIMEOUT_MS 1000 /* Tab must not hang on a stuck context */
#define MAX_WORDS 32
#define HISTORY_MAX 1000

/* What an argument position completes to. */
typedef enum what {
    W_NONE,
    W_TASK,      /* a live CTX:TASK */
    W_DEAD_TASK, /* a terminated CTX:TASK */
    W_CTX,       /* a context id */
    W_SIGNAL,    /* a signal name */
    W_COMMAND,   /* a command name */
    W_PS_OPTION, /* ps options, and a context after -c */
} what;

typedef struct command {
    const char *name, *args, *help;
    int min_args;
    int (*run)(int argc, char **argv); /* a kin subcommand; NULL: local */
    what arg[2];                       /* first and later arguments */
} command;

static const command commands[] = {
    {"ps",
     "[-c CTX] [-f TEXT] [-p]",
     "live tasks of every context (or CTX)",
     0,
     kin__cli_ps,
     {W_PS_OPTION, W_PS_OPTION}},
    {"pstree",
     "",
     "await tree across contexts; prints deadlock cycles",
     0,
     kin__cli_pstree,
     {W_NONE, W_NONE}},
    {"tree",
     "",
     "context tree: id, name, pid, tasks, rss, uptime",
     0,
     kin__cli_tree,
     {W_NONE, W_NONE}},
    {"where",
     "CTX:TASK",
     "a task's current stack, file:line, and who created it",
     1,
     kin__cli_where,
     {W_TASK, W_NONE}},
    {"ps-terminated",
     "[-c CTX] [-n N]",
     "recently terminated tasks and how they ended",
     0,
     kin__cli_ps_terminated,
     {W_PS_OPTION, W_PS_OPTION}},
    {"where-terminated",
     "CTX:TASK",
     "how a terminated task ended, who cancelled it",
     1,
     kin__cli_where_terminated,
     {W_DEAD_TASK, W_NONE}},
    {"cancel",
     "CTX:TASK",
     "cancel a task",
     1,
     kin__cli_cancel,
     {W_TASK, W_NONE}},
    {"signal",
     "CTX SIGNAME",
     "send a signal (TERM, INT, USR1, ...) to a context's process",
     2,
     kin__cli_signal,
     {W_CTX, W_SIGNAL}},
    {"stacktrace",
     "CTX",
     "stacks of every thread of a context",
     1,
     kin__cli_stacktrace,
     {W_CTX, W_NONE}},
    {"logs",
     "[-n N] [--since TIME] [-l LEVEL] [-c CTX] [-g TEXT] [-f] [--json]",
     "recent log records of the tree (-f: then follow, Ctrl-C stops)",
     0,
     kin__cli_logs,
     {W_NONE, W_NONE}},
    {"ctx",
     "[CTX]",
     "show or set the context custom commands go to",
     0,
     NULL,
     {W_CTX, W_NONE}},
    {"help",
     "[COMMAND]",
     "list commands, or show one",
     0,
     NULL,
     {W_COMMAND, W_NONE}},
    {"exit",
     "",
     "leave the monitor (also quit, Ctrl-D)",
     0,
     NULL,
     {W_NONE, W_NONE}},
    {"quit", "", "leave the monitor", 0, NULL, {W_NONE, W_NONE}},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static const char *const signals[] = {"TERM", "INT",  "HUP",  "QUIT", "KILL",
                                      "USR1", "USR2", "CONT", "STOP"};

/* A custom command of the current context, as its help lists it. */
typedef struct custom {
    char name[32];
    char help[128];
} custom;

typedef struct mon {
    int pid; /* the master's */
    char pid_arg[16];
    kin_node *node; /* held for custom commands and completion */
    uint32_t ctx;   /* where custom commands go */
    char ctx_name[64];
    custom *customs;
    size_t n_customs;
    bool interactive;
    int worst; /* the highest status a command returned */
} mon;

/* libedit's completion hook has no argument. */
static mon *the_mon;

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: kin monitor PID [CTX]\n"
            "  an interactive monitor of the tree PID belongs to: the kin "
            "commands\n"
            "  without the PID (ps, pstree, where, cancel, ...) plus the "
            "tree's custom\n"
            "  commands, sent to context CTX (default 0; change it with "
            "'ctx N').\n"
            "  Tab completes commands, task ids, contexts and signals; an "
            "empty line\n"
            "  repeats the last command; help lists the commands. With stdin "
            "not a\n"
            "  terminal it reads one command per line (blank lines and # "
            "comments\n"
            "  skipped) and exits with the highest status a command "
            "returned:\n"
            "    echo ps | kin monitor PID\n");
}

static const command *
find_command(const char *name)
{
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (!strcmp(commands[i].name, name))
            return &commands[i];
    return NULL;
}

static const custom *
find_custom(const mon *m, const char *name)
{
    for (size_t i = 0; i < m->n_customs; i++)
        if (!strcmp(m->customs[i].name, name))
            return &m->customs[i];
    return NULL;
}

/* --- talking to the target ------------------------------------------------
 */

/* The text of a reply's key (a str), or NULL. */
static const char *
reply_text(const kin_msg *reply, const char *key, size_t *len)
{
    kin_reader rd;
    kin_reader_init(&rd, reply->body, reply->len);
    uint32_t pairs;
    const char *found = NULL;
    if (kin_unpack(&rd, "M", &pairs))
        pairs = 0;
    for (uint32_t i = 0; i < pairs; i++) {
        const char *k;
        size_t kl;
        msgpack_object v;
        if (kin_unpack(&rd, "S", &k, &kl) || kin_reader_next(&rd, &v))
            break;
        if (kl == strlen(key) && !memcmp(k, key, kl) &&
            v.type == MSGPACK_OBJECT_STR) {
            /* The str's bytes live in reply->body. */
            found = v.via.str.ptr;
            *len = v.via.str.size;
            break;
        }
    }
    kin_reader_release(&rd);
    return found;
}

/* Reads {"commands": [[name, help, is_custom], ...]} from the current
 * context. Keeps the old list when the context does not answer. */
static void
load_customs(mon *m)
{
    kin_buf b = {0};
    kin_msg *reply = NULL;
    kin_err e = kin_pack(&b, "s", "help");
    if (!e)
        e = kin_monitor_request(m->node, m->ctx, &b, COMPLETE_TIMEOUT_MS,
                                &reply);
    kin_buf_release(&b);
    if (e) {
        kin_msg_destroy(&reply);
        return;
    }
    custom *list = NULL;
    size_t n = 0;
    kin_reader rd;
    kin_reader_init(&rd, reply->body, reply->len);
    uint32_t pairs = 0, count = 0;
    e = kin_unpack(&rd, "M", &pairs);
    for (uint32_t i = 0; !e && i < pairs; i++) {
        const char *k;
        size_t kl;
        if ((e = kin_unpack(&rd, "S", &k, &kl)))
            break;
        if (kl != 8 || memcmp(k, "commands", 8)) {
            e = kin_unpack(&rd, "?");
            continue;
        }
        if ((e = kin_unpack(&rd, "a", &count)))
            break;
        list = calloc(count ? count : 1, sizeof *list);
        if (!list)
            e = -ENOMEM;
        for (uint32_t c = 0; !e && c < count; c++) {
            uint32_t items;
            const char *name, *help;
            size_t nl, hl;
            bool is_custom;
            if ((e = kin_unpack(&rd, "aSSb", &items, &name, &nl, &help, &hl,
                                &is_custom)))
                break;
            for (uint32_t extra = 3; !e && extra < items; extra++)
                e = kin_unpack(&rd, "?");
            if (is_custom && nl < sizeof list[n].name) {
                snprintf(list[n].name, sizeof list[n].name, "%.*s", (int)nl,
                         name);
                snprintf(list[n].help, sizeof list[n].help, "%.*s", (int)hl,
                         help);
                n++;
            }
        }
    }
    kin_reader_release(&rd);
    kin_msg_destroy(&reply);
    if (e) {
        free(list);
        return;
    }
    free(m->customs);
    m->customs = list;
    m->n_customs = n;
}

/* Sends a custom command with the rest of the line to the current
 * context and prints what it says. */
static int
run_custom(mon *m, const char *name, const char *args)
{
    kin_buf b = {0};
    kin_msg *reply = NULL;
    kin_err e = kin_pack(&b, "sMss", name, 1, "args", args);
    if (!e)
        e = kin_monitor_request(m->node, m->ctx, &b, TIMEOUT_MS, &reply);
    kin_buf_release(&b);
    const char *text = NULL;
    size_t len = 0;
    if (e == KIN_EREMOTE)
        text = reply_text(reply, "error", &len);
    if (e) {
        if (text)
            fprintf(stderr, "%s: %.*s\n", name, (int)len, text);
        else if (kill(m->pid, 0) && errno == ESRCH)
            fprintf(stderr, "%s: the master %d is gone\n", name, m->pid);
        else
            fprintf(stderr, "%s: context %u: %s\n", name, m->ctx,
                    kin_strerror(e));
        kin_msg_destroy(&reply);
        return 2;
    }
    text = reply_text(reply, "output", &len);
    if (text && len) {
        fwrite(text, 1, len, stdout);
        if (text[len - 1] != '\n')
            putchar('\n');
    }
    kin_msg_destroy(&reply);
    return 0;
}

/* --- commands -------------------------------------------------------------
 */

static void
print_usage(const command *c)
{
    printf("usage: %s%s%s\n  %s\n", c->name, c->args[0] ? " " : "", c->args,
           c->help);
}

static void
print_help(mon *m)
{
    load_customs(m); /* they may have been registered since */
    printf("commands (CTX:TASK is a task id such as 1:7; most take "
           "--json):\n");
    for (size_t i = 0; i < N_COMMANDS; i++) {
        char head[48];
        snprintf(head, sizeof head, "%s%s%s", commands[i].name,
                 commands[i].args[0] ? " " : "", commands[i].args);
        printf("  %-30s %s\n", head, commands[i].help);
    }
    if (m->n_customs) {
        printf("custom commands of context %u (%s), with the rest of the "
               "line:\n",
               m->ctx, m->ctx_name);
        for (size_t i = 0; i < m->n_customs; i++)
            printf("  %-30s %s%s\n", m->customs[i].name, m->customs[i].help,
                   find_command(m->customs[i].name)
                       ? " (hidden by the monitor's own command)"
                       : "");
    }
    if (m->interactive)
        printf("Tab completes; an empty line repeats the last command.\n");
}

/* ctx [N]: shows or sets the context custom commands go to. */
static int
set_ctx(mon *m, int argc, char **argv)
{
    if (argc < 2) {
        printf("custom commands go to context %u (%s)\n", m->ctx, m->ctx_name);
        return 0;
    }
    char *end;
    unsigned long id = strtoul(argv[1], &end, 10);
    kin_ctx_info info;
    if (*end || end == argv[1] || id >= KIN_NO_CTX) {
        fprintf(stderr, "ctx: '%s' is not a context id\n", argv[1]);
        return 2;
    }
    kin_err e = kin__cli_info(m->node, (uint32_t)id, &info);
    if (e == KIN_ENOROUTE) {
        fprintf(stderr, "ctx: no context %lu in this tree\n", id);
        return 2;
    } else if (e) {
        fprintf(stderr, "ctx: context %lu: %s\n", id, kin_strerror(e));
        return 2;
    }
    m->ctx = (uint32_t)id;
    snprintf(m->ctx_name, sizeof m->ctx_name, "%s", info.name);
    free(m->customs);
    m->customs = NULL;
    m->n_customs = 0;
    load_customs(m);
    printf("custom commands now go to context %u (%s)\n", m->ctx, m->ctx_name);
    return 0;
}

/* Splits line into words: blanks separate, quotes group, a backslash
 * escapes the next character. Writes into buf (as long as line). Returns
 * the number of words, or -1 (with a message unless quiet: completion
 * splits lines still being typed). */
static int
split(const char *line, char *buf, char **words, bool quiet)
{
    int n = 0;
    const char *p = line;
    char *o = buf;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
            p++;
        if (!*p)
            return n;
        if (n == MAX_WORDS) {
            if (!quiet)
                fprintf(stderr, "kin monitor: more than %d words\n", MAX_WORDS);
            return -1;
        }
        words[n++] = o;
        char quote = 0;
        for (; *p; p++) {
            if (quote) {
                if (*p == quote)
                    quote = 0;
                else if (*p == '\\' && quote == '"' && p[1])
                    *o++ = *++p;
                else
                    *o++ = *p;
            } else if (*p == '\'' || *p == '"') {
                quote = *p;
            } else if (*p == '\\' && p[1]) {
                *o++ = *++p;
            } else if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
                break;
            } else {
                *o++ = *p;
            }
        }
        *o++ = 0;
        if (quote) {
            if (!quiet)
                fprintf(stderr, "kin monitor: unterminated %c quote\n", quote);
            return -1;
        }
    }
}

/* Runs one command line. Returns its status, or -1 to leave. */
static int
run_line(mon *m, const char *line)
{
    char *buf = malloc(strlen(line) + 1);
    char *words[MAX_WORDS + 2];
    if (!buf)
        return 2;
    int n = split(line, buf, words, false);
    int rc = 0;
    if (n <= 0) {
        rc = n < 0 ? 2 : 0;
        goto out;
    }
    const command *c = find_command(words[0]);
    bool wants_help = false;
    for (int i = 1; i < n; i++)
        wants_help |= !strcmp(words[i], "--help") || !strcmp(words[i], "-h");
    if (c && wants_help) {
        print_usage(c);
    } else if (c && n - 1 < c->min_args) {
        fprintf(stderr, "%s: missing %s\n", c->name, c->args);
        print_usage(c);
        rc = 2;
    } else if (c && c->run) {
        /* The kin subcommand, with the master's pid in front. */
        char *argv[MAX_WORDS + 2];
        argv[0] = words[0];
        argv[1] = m->pid_arg;
        for (int i = 1; i < n; i++)
            argv[i + 1] = words[i];
        argv[n + 1] = NULL;
        rc = c->run(n + 1, argv);
    } else if (c && (!strcmp(c->name, "exit") || !strcmp(c->name, "quit"))) {
        rc = -1;
    } else if (c && !strcmp(c->name, "ctx")) {
        rc = set_ctx(m, n, words);
    } else if (c && n > 1) { /* help COMMAND */
        const command *h = find_command(words[1]);
        const custom *u = h ? NULL : find_custom(m, words[1]);
        if (h) {
            print_usage(h);
        } else if (u) {
            printf("usage: %s [ARGS]\n  %s (custom, context %u)\n", u->name,
                   u->help, m->ctx);
        } else {
            fprintf(stderr, "help: no command '%s'\n", words[1]);
            rc = 2;
        }
    } else if (c) {
        print_help(m);
    } else {
        if (!find_custom(m, words[0]))
            load_customs(m);
        if (!find_custom(m, words[0])) {
            char where[48] = "";
            if (m->ctx)
                snprintf(where, sizeof where, " in context %u", m->ctx);
            fprintf(stderr,
                    "kin monitor: unknown command '%s'%s (help lists them)\n",
                    words[0], where);
            rc = 2;
        } else {
            /* The rest of the line as typed. */
            const char *rest = line + strspn(line, " \t");
            rest += strcspn(rest, " \t");
            rest += strspn(rest, " \t");
            char *args = strdup(rest);
            if (args) {
                args[strcspn(args, "\r\n")] = 0;
                rc = run_custom(m, words[0], args);
                free(args);
            }
        }
    }
out:
    free(buf);
    fflush(stdout);
    fflush(stderr);
    if (rc > m->worst)
        m->worst = rc;
    return rc;
}

/* --- completion -----------------------------------------------------------
 */

static char **cands;
static size_t n_cands, cap_cands;

static void
cands_clear(void)
{
    for (size_t i = 0; i < n_cands; i++)
        free(cands[i]);
    n_cands = 0;
}

static void
cand_add(const char *s)
{
    for (size_t i = 0; i < n_cands; i++)
        if (!strcmp(cands[i], s))
            return;
    if (n_cands == cap_cands) {
        size_t cap = cap_cands ? 2 * cap_cands : 64;
        char **more = realloc(cands, cap * sizeof *more);
        if (!more)
            return;
        cands = more;
        cap_cands = cap;
    }
    char *copy = strdup(s);
    if (copy)
        cands[n_cands++] = copy;
}

static void
add_tasks(mon *m, bool terminated)
{
    kin_ctx_info *ctxs;
    size_t nctx;
    if (kin__cli_contexts(m->node, &ctxs, &nctx))
        return;
    for (size_t i = 0; i < nctx; i++) {
        kin_task_info *ts;
        size_t count;
        kin_err e =
            terminated
                ? kin_monitor_ps_terminated(m->node, ctxs[i].id,
                                            COMPLETE_TIMEOUT_MS, &ts, &count)
                : kin_monitor_ps(m->node, ctxs[i].id, NULL, false,
                                 COMPLETE_TIMEOUT_MS, &ts, &count);
        if (e)
            continue;
        for (size_t k = 0; k < count; k++) {
            char id[24];
            snprintf(id, sizeof id, "%u:%u", ts[k].ctx, ts[k].id);
            cand_add(id);
        }
        free(ts);
    }
    free(ctxs);
}

static void
add_contexts(mon *m)
{
    kin_ctx_info *ctxs;
    size_t nctx;
    if (kin__cli_contexts(m->node, &ctxs, &nctx))
        return;
    for (size_t i = 0; i < nctx; i++) {
        char id[16];
        snprintf(id, sizeof id, "%u", ctxs[i].id);
        cand_add(id);
    }
    free(ctxs);
}

static void
add_commands(mon *m)
{
    for (size_t i = 0; i < N_COMMANDS; i++)
        cand_add(commands[i].name);
    for (size_t i = 0; i < m->n_customs; i++)
        cand_add(m->customs[i].name);
}

static char *
next_cand(const char *text, int state)
{
    static size_t i, len;
    if (!state) {
        i = 0;
        len = strlen(text);
    }
    while (i < n_cands) {
        const char *c = cands[i++];
        if (!strncmp(c, text, len))
            return strdup(c);
    }
    return NULL;
}

/* libedit asks for the words that may replace text, which spans
 * [start, end) of the line. */
static char **
complete(const char *text, int start, int end)
{
    (void)end;
    mon *m = the_mon;
    rl_attempted_completion_over = 1; /* never file names */
    cands_clear();
    /* The words before the one being completed. */
    char *head = strndup(rl_line_buffer, (size_t)start);
    char *buf = head ? malloc(strlen(head) + 1) : NULL;
    char *words[MAX_WORDS + 2];
    int n = buf ? split(head, buf, words, true) : -1;
    if (n == 0) {
        load_customs(m);
        add_commands(m);
    } else if (n > 0) {
        const command *c = find_command(words[0]);
        what w = c ? c->arg[n > 1] : W_NONE;
        if (w == W_PS_OPTION && !strcmp(words[n - 1], "-c"))
            w = W_CTX;
        switch (w) {
        case W_TASK:
        case W_DEAD_TASK:
            add_tasks(m, w == W_DEAD_TASK);
            break;
        case W_CTX:
            add_contexts(m);
            break;
        case W_SIGNAL:
            for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++)
                cand_add(signals[i]);
            break;
        case W_COMMAND:
            add_commands(m);
            break;
        case W_PS_OPTION:
            if (strcmp(words[n - 1], "-f")) {
                cand_add("-c");
                cand_add("-f");
                cand_add("-p");
                cand_add("--json");
            }
            break;
        case W_NONE:
            break;
        }
    }
    free(buf);
    free(head);
    return rl_completion_matches(text, next_cand);
}

/* --- the loop -------------------------------------------------------------
 */

/* $XDG_STATE_HOME/kin/history, else ~/.local/state/kin/history; the
 * directories are made (0700) as needed. false when there is no home. */
static bool
history_path(char *path, size_t size)
{
    const char *state = getenv("XDG_STATE_HOME");
    const char *home = getenv("HOME");
    int len;
    if (state && state[0] == '/')
        len = snprintf(path, size, "%s/kin/history", state);
    else if (home && home[0])
        len = snprintf(path, size, "%s/.local/state/kin/history", home);
    else
        return false;
    if (len < 0 || (size_t)len >= size)
        return false;
    /* mkdir -p of the directory part. */
    for (char *s = path + 1; (s = strchr(s, '/')); s++) {
        *s = 0;
        if (mkdir(path, 0700) && errno != EEXIST) {
            *s = '/';
            return false;
        }
        *s = '/';
    }
    return true;
}

static volatile sig_atomic_t interrupted;

static void
on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void
interactive_loop(mon *m)
{
    char hist[512];
    bool has_hist = history_path(hist, sizeof hist);
    rl_readline_name = "kin";
    rl_attempted_completion_function = complete;
    /* Ctrl-C drops the line being typed instead of leaving: libedit puts
     * the terminal back and passes SIGINT on to this handler; without
     * SA_RESTART its read fails and readline returns NULL, flag set. */
    struct sigaction sa = {.sa_handler = on_sigint}, old_sa;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_sa);
    stifle_history(HISTORY_MAX);
    if (has_hist)
        read_history(hist);
    char prompt[64], *last = NULL;
    for (;;) {
        if (m->ctx)
            snprintf(prompt, sizeof prompt, "kin %d ctx %u> ", m->pid, m->ctx);
        else
            snprintf(prompt, sizeof prompt, "kin %d> ", m->pid);
        interrupted = 0;
        char *line = readline(prompt);
        if (!line && interrupted) {
            putchar('\n');
            continue;
        }
        if (!line) {
            putchar('\n'); /* Ctrl-D leaves the cursor after the prompt */
            break;
        }
        /* Completion leaves a blank behind the last word. */
        size_t len = strlen(line);
        while (len && (line[len - 1] == ' ' || line[len - 1] == '\t'))
            line[--len] = 0;
        if (!line[strspn(line, " \t")]) {
            free(line);
            if (!last)
                continue;
            line = strdup(last);
            if (!line)
                break;
        } else {
            if (!last || strcmp(last, line)) /* no repeats in history */
                add_history(line);
            free(last);
            last = strdup(line);
        }
        int rc = run_line(m, line);
        free(line);
        if (rc < 0)
            break;
    }
    free(last);
    if (has_hist)
        write_history(hist);
    clear_history();
    sigaction(SIGINT, &old_sa, NULL);
}

static void
script_loop(mon *m)
{
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, stdin) > 0) {
        const char *s = line + strspn(line, " \t");
        if (!*s || *s == '\n' || *s == '\r' || *s == '#')
            continue;
        if (run_line(m, line) < 0)
            break;
    }
    free(line);
}

int
kin__cli_monitor(int argc, char **argv)
{
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return 0;
    }
    char *end = NULL;
    long pid = argc > 1 ? strtol(argv[1], &end, 10) : 0;
    unsigned long ctx = 0;
    if (argc < 2 || argc > 3 || *end || pid <= 0) {
        usage(stderr);
        return 2;
    }
    if (argc == 3) {
        ctx = strtoul(argv[2], &end, 10);
        if (*end || end == argv[2] || ctx >= KIN_NO_CTX) {
            fprintf(stderr, "kin monitor: '%s' is not a context id\n", argv[2]);
            return 2;
        }
    }
    mon m = {.ctx = (uint32_t)ctx, .interactive = isatty(STDIN_FILENO)};
    /* Held for the session; the subcommands attach on their own. */
    if (kin__cli_attach_held((int)pid, &m.node))
        return 2;
    kin_ctx_info master, here;
    uint32_t asked = KIN_MASTER_ID;
    kin_err e = kin__cli_info(m.node, asked, &master);
    if (!e)
        e = kin__cli_info(m.node, asked = m.ctx, &here);
    if (e == KIN_ENOROUTE)
        fprintf(stderr, "kin monitor: no context %u in the tree of %ld\n",
                asked, pid);
    else if (e)
        fprintf(stderr, "kin monitor: context %u does not answer: %s\n", asked,
                kin_strerror(e));
    if (e) {
        kin_node_destroy(&m.node);
        return 2;
    }
    m.pid = master.pid;
    snprintf(m.pid_arg, sizeof m.pid_arg, "%d", master.pid);
    snprintf(m.ctx_name, sizeof m.ctx_name, "%s", here.name);
    load_customs(&m);
    the_mon = &m;
    if (m.interactive) {
        printf("kin monitor: master %d (%s); help lists commands, Tab "
               "completes, Ctrl-D leaves\n",
               m.pid, master.name);
        interactive_loop(&m);
    } else {
        script_loop(&m);
    }
    the_mon = NULL;
    cands_clear();
    free(cands);
    cands = NULL;
    cap_cands = 0;
    free(m.customs);
    kin_node_destroy(&m.node);
    return m.interactive ? 0 : m.worst;
}
