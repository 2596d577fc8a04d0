/* The stack a failed call's error reply carries (kin_call_error_stack):
 * the frames from where the served function called kin_call_fail down to
 * that function, symbolized here, in the callee, where its debug info is. */
#include "monitor/errstack.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "monitor/stack.h"
#include "router/router.h"

/* Appends one frame's line; false when out is full. */
static bool
put_frame(char *out, size_t cap, size_t *len, int i, const kin__frame *f)
{
    const char *file = strrchr(f->file, '/');
    file = file ? file + 1 : f->file;
    int w;
    if (f->line)
        w = snprintf(out + *len, cap - *len, "%s#%d %s (%s:%d)",
                     *len ? "\n" : "", i, f->fn, file, f->line);
    else if (*file)
        w = snprintf(out + *len, cap - *len, "%s#%d %s (%s)", *len ? "\n" : "",
                     i, f->fn, file);
    else
        w = snprintf(out + *len, cap - *len, "%s#%d %s", *len ? "\n" : "", i,
                     f->fn);
    if (w < 0 || (size_t)w >= cap - *len) {
        out[*len] = 0;
        return false;
    }
    *len += (size_t)w;
    return true;
}

size_t
kin__errstack_format(void *const *pcs, int n, void *fn, char *out, size_t cap)
{
    if (!cap)
        return 0;
    out[0] = 0;
    if (n > KIN__ERRSTACK_FRAMES)
        n = KIN__ERRSTACK_FRAMES;
    /* addrs[0] is the function's entry (one byte on, as symbolize looks one
     * byte back), then the stack. */
    uintptr_t addrs[KIN__ERRSTACK_FRAMES + 1];
    kin__frame frames[KIN__ERRSTACK_FRAMES + 1];
    addrs[0] = (uintptr_t)fn + 1;
    for (int i = 0; i < n; i++)
        addrs[i + 1] = (uintptr_t)pcs[i];
    kin__stack_symbolize(addrs, n + 1, frames);
    const kin__frame *entry = &frames[0];
    size_t len = 0;
    int shown = 0;
    bool reached = false;
    for (int i = 1; i <= n && !reached; i++) {
        reached = !strcmp(frames[i].fn, entry->fn);
        if (!put_frame(out, cap, &len, shown++, &frames[i]))
            return len;
    }
    if (!reached && strcmp(entry->fn, "??"))
        /* No stack, or it did not lead back to the function (inlined,
         * cut at the frame bound): name the function where it starts. */
        put_frame(out, cap, &len, shown, entry);
    return len;
}
