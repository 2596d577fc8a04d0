/* The formatter of failed calls' stacks that the context assembly gives
 * the worker pool (kin__calls_set_stack_fmt). */
#ifndef KIN_MONITOR_ERRSTACK_H
#define KIN_MONITOR_ERRSTACK_H

#include <stdbool.h>
#include <stddef.h>

/* A kin__errstack_fmt (router/call_impl.h): the frames of pcs from where
 * kin_call_fail was called down to fn, one line each ("#0 fn (file:line)"),
 * then fn itself where the stack did not reach it. */
size_t kin__errstack_format(void *const *pcs, int n, void *fn, char *out,
                            size_t cap);

#endif
