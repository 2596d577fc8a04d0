/* The kin command's internal interface (tool.h), on top of the router
 * (runtime directory, CURVE keys) and the logs (the forwarder). */
#include "context/tool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/sockname.h"
#include "logs/logfwd.h"
#include "router/router.h"

struct kin__tool_fwd {
    kin__logfwd *fwd;
};

kin_err
kin__tool_runtime_dir(char *out, size_t size)
{
    return kin__runtime_dir(out, size);
}

bool
kin__tool_sock_listening(const char *path)
{
    return kin__sockname_listening(path);
}

int
kin__tool_sock_path(char *out, size_t size, const char *dir, int pid,
                    uint32_t id)
{
    return kin__sockname(out, size, dir, pid, id, 0);
}

bool
kin__tool_sock_parse(const char *name, int *pid, uint32_t *id)
{
    return kin__sockname_parse(name, pid, id);
}

kin_err
kin__tool_keygen(char *out, size_t size)
{
    kin__curve_key k;
    if (size < 2 * KIN__KEY_LEN)
        return -ENOSPC;
    if (kin__curve_generate(&k))
        return -ENOTSUP;
    kin__curve_format(&k, out);
    memset(&k, 0, sizeof k);
    return KIN_OK;
}

bool
kin__tool_key_valid(const char *text)
{
    kin__curve_key k;
    bool ok = text && kin__curve_parse(&k, text) == KIN_OK;
    memset(&k, 0, sizeof k);
    return ok;
}

bool
kin__tool_endpoint_is_tcp(const char *endpoint)
{
    return kin__endpoint_is_tcp(endpoint);
}

kin_err
kin__tool_fwd_start(kin__tool_fwd **out, const kin__tool_fwd_opts *o)
{
    kin__curve_key key;
    kin__logfwd_opts fo = {.backend = o->backend,
                           .frontend = o->frontend,
                           .hwm = o->hwm,
                           .lossless = o->lossless,
                           .sink_fd = -1,
                           .history = o->history};
    if (o->curve_key) {
        if (kin__curve_parse(&key, o->curve_key))
            return -EINVAL;
        fo.curve = &key;
    }
    kin__tool_fwd *f = calloc(1, sizeof *f);
    if (!f)
        return -ENOMEM;
    kin_err e = kin__logfwd_start(&f->fwd, &fo);
    memset(&key, 0, sizeof key);
    if (e) {
        free(f);
        return e;
    }
    *out = f;
    return KIN_OK;
}

const char *
kin__tool_fwd_backend(const kin__tool_fwd *f)
{
    return kin__logfwd_backend(f->fwd);
}

const char *
kin__tool_fwd_frontend(const kin__tool_fwd *f)
{
    return kin__logfwd_frontend(f->fwd);
}

uint64_t
kin__tool_fwd_records(const kin__tool_fwd *f)
{
    kin__logfwd_stats st;
    kin__logfwd_stats_get(f->fwd, &st);
    return st.records;
}

void
kin__tool_fwd_stop(kin__tool_fwd **fp)
{
    if (!fp || !*fp)
        return;
    kin__logfwd_stop(&(*fp)->fwd);
    free(*fp);
    *fp = NULL;
}
