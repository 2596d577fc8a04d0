/* kin_strerror and kin_err_name, generated from KIN_ERR_MAP so the enum, the
 * messages and the names cannot drift apart. */
#include <kin/err.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

const char *
kin_strerror(int err)
{
    switch (err) {
    case KIN_OK:
        return "success";
#define X(name, value, msg)                                                    \
    case value:                                                                \
        return msg;
        KIN_ERR_MAP(X)
#undef X
    }
    if (err < 0 && err > -4096)
        return strerror(-err);
    return "unknown error";
}

const char *
kin_err_name(int err)
{
    switch (err) {
    case KIN_OK:
        return "KIN_OK";
#define X(name, value, msg)                                                    \
    case value:                                                                \
        return "KIN_E" #name;
        KIN_ERR_MAP(X)
#undef X
    }
    if (err < 0 && err > -4096) {
        const char *n = strerrorname_np(-err);
        if (n)
            return n;
    }
    return "KIN_EUNKNOWN";
}
