/* remote: contexts on other hosts, started over ssh with nothing installed
 * there.
 *
 *   kin-remote HOST [VIA_HOST] [-- SSH_ARGS...]
 *
 * Starts context "far" on HOST through the system ssh client (this
 * executable is streamed there and run from a private temporary file),
 * calls it, and with VIA_HOST also starts "farther" on VIA_HOST *from far*
 * (kin_spawn_opts.via), so the master needs no route to VIA_HOST. Each
 * context says where it runs. ssh must log in without a prompt (keys or an
 * agent: kin runs it with BatchMode=yes); anything after "--" goes to ssh
 * as is, e.g. `-- -F my_ssh_config` or `-- -p 2222 -i key`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <kin/kin.h>

/* Served in every context: this host's name, the pid and the network
 * namespace (so contexts in namespaces of one machine tell apart). */
static kin_err
where(kin_call *c, void *arg)
{
    char host[256] = "?", ns[64] = "?";
    gethostname(host, sizeof host);
    ssize_t len = readlink("/proc/self/ns/net", ns, sizeof ns - 1);
    if (len > 0)
        ns[len] = 0;
    return kin_call_return(c, "sis", host, (int)getpid(), ns);
}

static void
fail(const char *what, kin_err e, const char *detail)
{
    fprintf(stderr, "kin-remote: FAILED: %s: %s%s%s\n", what, kin_strerror(e),
            detail && *detail ? ": " : "", detail ? detail : "");
    exit(1);
}

static void
show(kin_node *n, uint32_t ctx, const char *name)
{
    kin_msg *reply = NULL;
    char *host = NULL, *ns = NULL;
    int pid = 0;
    kin_err e = kin_call_sync(n, ctx, "where", 10000, &reply, "");
    if (!e)
        e = kin_msg_unpack(reply, "sis", &host, &pid, &ns);
    kin_msg_destroy(&reply);
    if (e)
        fail("calling where", e, name);
    printf("  %-8s context %-3u host %-12s pid %-7d %s\n", name, ctx, host, pid,
           ns);
    free(host);
    free(ns);
}

int
main(int argc, char **argv)
{
    kin_export("where", where, NULL, KIN_POLICY_ANY);
    kin_node *n;
    kin_err e = kin_init(&n, NULL); /* a child serves here and never returns */
    if (e)
        fail("kin_init", e, NULL);
    int dashes = argc;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--")) {
            dashes = i;
            break;
        }
    if (dashes < 2 || dashes > 3) {
        fprintf(stderr, "usage: %s HOST [VIA_HOST] [-- SSH_ARGS...]\n",
                argv[0]);
        return 2;
    }
    char **ssh_args = dashes < argc ? argv + dashes + 1 : NULL;

    char err[1024] = "";
    kin_spawn_opts far_opts = {.name = "far",
                               .host = argv[1],
                               .ssh_args = ssh_args,
                               .errbuf = err,
                               .errbuf_size = sizeof err};
    kin_child *far = NULL, *farther = NULL;
    if ((e = kin_spawn(n, &far_opts, &far)))
        fail("starting far", e, err);
    printf("contexts:\n");
    show(n, KIN_MASTER_ID, "master");
    show(n, kin_child_id(far), "far");
    if (dashes == 3) {
        kin_spawn_opts farther_opts = {.name = "farther",
                                       .host = argv[2],
                                       .ssh_args = ssh_args,
                                       .via = kin_child_id(far),
                                       .errbuf = err,
                                       .errbuf_size = sizeof err};
        if ((e = kin_spawn(n, &farther_opts, &farther)))
            fail("starting farther via far", e, err);
        show(n, kin_child_id(farther), "farther");
    }
    kin_child_destroy(&farther);
    kin_child_destroy(&far);
    kin_node_destroy(&n);
    printf("remote example: OK\n");
    return 0;
}
