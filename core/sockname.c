/* Contexts' socket file names (core/sockname.h). */
#include "core/sockname.h"

#include <stdio.h>
#include <string.h>

int
kin__sockname(char *out, size_t size, const char *dir, int pid, uint32_t id,
              unsigned seq)
{
    if (seq)
        return snprintf(out, size, "%s/%d-%u.%u.sock", dir, pid, id, seq);
    return snprintf(out, size, "%s/%d-%u.sock", dir, pid, id);
}

bool
kin__sockname_parse(const char *name, int *pid, uint32_t *id)
{
    int p, end = 0;
    unsigned i;
    if (sscanf(name, "%d-%u.sock%n", &p, &i, &end) != 2 || !end || name[end] ||
        p <= 0)
        return false;
    *pid = p;
    *id = i;
    return true;
}
