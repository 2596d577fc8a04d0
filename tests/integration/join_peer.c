/* A process that test_join starts itself (never through kin_spawn):
 *   join_peer master JOIN_ENDPOINT
 *       a master accepting joins there; prints "ready PID"
 *   join_peer parent JOIN_ENDPOINT NAME
 *       joins as NAME, then spawns a child of its own, NAME-kid (this
 *       program again, serving peer.pid, peer.name and peer.spawn NAME,
 *       which spawns a child of its own); prints "joined ID
 *       child ID"
 *   join_peer joiner JOIN_ENDPOINT NAME [CERT_SECRET SERVER_CERT | key KEY]
 *       joins the tree as NAME (over tcp with the certificates) and offers the
 * service "peer" (peer.pid answers its pid, peer.name its name, peer.sleep MS
 * waits); prints "joined
 * ID", or "error CODE TEXT" and exits 2 Either ends (kin_node_destroy, exit 0)
 * when its stdin closes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <kin/kin.h>

static char my_name[64];

static kin_err
peer_pid(kin_call *c, void *arg)
{
    (void)arg;
    return kin_call_return(c, "i", (int)getpid());
}

static kin_err
peer_name(kin_call *c, void *arg)
{
    (void)arg;
    return kin_call_return(c, "s", my_name);
}

/* peer.sleep MS: a task that waits MS ms (or its cancellation). */
static kin_err
peer_sleep(kin_call *c, void *arg)
{
    (void)arg;
    int ms = 0;
    kin_err e = kin_call_args(c, "i", &ms);
    if (!e)
        e = kin_task_sleep(ms);
    return e ? e : kin_call_return(c, "");
}

/* peer.spawn NAME: spawns a child of this context named NAME (this
 * program again); answers its id. It lives as long as this process. */
static kin_err
peer_spawn(kin_call *c, void *arg)
{
    (void)arg;
    char *name = NULL;
    kin_err e = kin_call_args(c, "s", &name);
    kin_child *kid = NULL;
    if (!e)
        e = kin_spawn(kin_call_node(c), &(kin_spawn_opts){.name = name}, &kid);
    free(name);
    return e ? e : kin_call_return(c, "u", kin_child_id(kid));
}

static void
wait_stdin_closed(void)
{
    char buf[64];
    while (read(0, buf, sizeof buf) > 0)
        ;
}

int
main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    kin_export("peer.pid", peer_pid, NULL, KIN_POLICY_ANY);
    kin_export("peer.name", peer_name, NULL, KIN_POLICY_ANY);
    kin_export("peer.sleep", peer_sleep, NULL, KIN_POLICY_ANY);
    kin_export("peer.spawn", peer_spawn, NULL, KIN_POLICY_ANY);
    kin_node *n = NULL;
    if (kin_started_as_child()) { /* a parent's NAME-kid: argv[0] names it */
        snprintf(my_name, sizeof my_name, "%s", argv[0]);
        kin_init(&n, NULL);
        return 1;
    }
    if (argc < 3)
        return 64;
    char why[512] = "";
    kin_node_opts o = {.errbuf = why, .errbuf_size = sizeof why};
    kin_child *kid = NULL;
    if (!strcmp(argv[1], "master")) {
        o.join_bind = argv[2];
        kin_err e = kin_node_new(&n, &o);
        if (e) {
            printf("error %d %s\n", e, why);
            return 2;
        }
        printf("ready %d\n", (int)getpid());
    } else if ((!strcmp(argv[1], "joiner") && (argc == 4 || argc == 6)) ||
               (!strcmp(argv[1], "parent") && argc == 4)) {
        snprintf(my_name, sizeof my_name, "%s", argv[3]);
        o.join = argv[2];
        o.name = argv[3];
        if (argc == 6 && !strcmp(argv[4], "key")) {
            o.curve_key = argv[5]; /* the tree's key, "PUBLIC:SECRET" */
        } else if (argc == 6) {
            o.join_cert = argv[4];
            o.join_server_cert = argv[5];
        }
        o.connect_timeout_ms = 5000;
        kin_err e = kin_node_new(&n, &o);
        if (!e)
            e = kin_service_offer(n, "peer", NULL);
        char kid_name[80];
        snprintf(kid_name, sizeof kid_name, "%s-kid", argv[3]);
        if (!e && !strcmp(argv[1], "parent"))
            e = kin_spawn(n,
                          &(kin_spawn_opts){.name = kid_name,
                                            .errbuf = why,
                                            .errbuf_size = sizeof why},
                          &kid);
        if (e) {
            printf("error %d %s\n", e, why);
            kin_node_destroy(&n);
            return 2;
        }
        if (kid)
            printf("joined %u child %u\n", kin_node_id(n), kin_child_id(kid));
        else
            printf("joined %u\n", kin_node_id(n));
    } else {
        return 64;
    }
    wait_stdin_closed();
    kin_child_destroy(&kid);
    kin_node_destroy(&n);
    return 0;
}
