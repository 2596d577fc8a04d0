/* kin-join: a process that kin did not start joins a running tree.
 *
 *   kin-join            a master accepting joins on an ipc endpoint; it
 *                       starts `kin-join greeter ENDPOINT` itself with
 *                       posix_spawn (as a shell or systemd would), calls
 *                       the service the joiner offers, then lets it go
 *   kin-join greeter EP joins the tree at EP as "greeter", offers the
 *                       service "greet" and serves until stdin closes */
#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <kin/kin.h>

extern char **environ;

static kin_err
hello(kin_call *c, void *arg)
{
    (void)arg;
    char *who = NULL;
    kin_err e = kin_call_args(c, "s", &who);
    if (!e)
        e = kin_call_return(c, "s", who); /* echoed; the pid says who */
    if (!e)
        e = kin_call_return(c, "i", (int)getpid());
    free(who);
    return e;
}

static int
greeter(const char *endpoint)
{
    kin_export("greet.hello", hello, NULL, KIN_POLICY_ANY);
    char why[256];
    kin_node_opts o = {.join = endpoint,
                       .name = "greeter",
                       .errbuf = why,
                       .errbuf_size = sizeof why};
    kin_node *n;
    kin_err e = kin_node_new(&n, &o);
    if (e) {
        fprintf(stderr, "greeter: %s\n", why);
        return 1;
    }
    kin_service_offer(n, "greet", NULL);
    char buf[64];
    while (read(0, buf, sizeof buf) > 0) /* until the master lets go */
        ;
    kin_node_destroy(&n); /* leaving: its offer goes at once */
    return 0;
}

static int
fail(const char *what, kin_err e)
{
    fprintf(stderr, "join example: %s: %s\n", what, kin_strerror(e));
    return 1;
}

int
main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "greeter"))
        return greeter(argv[2]);
    char dir[] = "/tmp/kin-join-example-XXXXXX", ep[128];
    if (!mkdtemp(dir)) /* 0700: only this user may join */
        return 1;
    snprintf(ep, sizeof ep, "ipc://%s/tree.sock", dir);
    kin_node *m;
    kin_err e = kin_node_new(&m, &(kin_node_opts){.join_bind = ep});
    if (e)
        return fail("kin_node_new", e);
    printf("master accepts joins at %s\n", kin_node_join_endpoint(m));

    /* An outside process: started here, but not by kin. */
    int in[2];
    pid_t pid;
    if (pipe(in)) {
        kin_node_destroy(&m);
        rmdir(dir);
        return fail("pipe", -errno);
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_addclose(&fa, in[1]);
    char *args[] = {argv[0], "greeter", ep, NULL};
    int spawned = posix_spawn(&pid, argv[0], &fa, NULL, args, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(in[0]);
    if (spawned) {
        kin_node_destroy(&m);
        rmdir(dir);
        return fail("posix_spawn", -spawned);
    }

    uint32_t id;
    int rc = 1;
    if ((e = kin_node_lookup(m, "greeter", &id, 10000))) {
        fail("waiting for the greeter", e);
        goto out;
    }
    printf("greeter joined as context %u\n", id);
    kin_msg *r = NULL;
    for (int i = 0; i < 100; i++) { /* its offer follows its HELLO */
        e = kin_service_call(m, "greet.hello", 5000, &r, "s", "world");
        if (e != KIN_ENOPROVIDER)
            break;
        usleep(20000);
    }
    char *text = NULL;
    int from = 0;
    if (e || (e = kin_msg_unpack(r, "si", &text, &from))) {
        fail("greet.hello", e);
        goto out;
    }
    printf("greet.hello(\"world\") = \"%s\" from pid %d\n", text, from);
    free(text);
    kin_msg_destroy(&r);

    close(in[1]); /* the greeter leaves */
    in[1] = -1;
    waitpid(pid, NULL, 0);
    pid = 0;
    while (kin_node_lookup(m, "greeter", &id, 0) == KIN_OK)
        usleep(5000);
    e = kin_service_call(m, "greet.hello", 5000, &r, "s", "again");
    printf("after it left: %s\n", kin_err_name(e));
    if (e == KIN_ENOPROVIDER) {
        printf("join example: OK\n");
        rc = 0;
    }
out:
    if (in[1] >= 0)
        close(in[1]);
    if (pid > 0)
        waitpid(pid, NULL, 0);
    kin_node_destroy(&m);
    rmdir(dir);
    return rc;
}
