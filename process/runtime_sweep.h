/* The runtime directory after a child's death: its own socket files go at
 * once, and the files its descendants could not remove (killed with it by
 * PR_SET_PDEATHSIG, so never reaped here) by a few bounded sweeps after
 * the reap. docs/supervision.md, "Socket files of killed contexts". */
#ifndef KIN_PROCESS_RUNTIME_SWEEP_H
#define KIN_PROCESS_RUNTIME_SWEEP_H

#include <sys/types.h>

#include "process/procs.h"

/* Removes the socket files of child id, pid ("PID-ID.sock" and its far
 * socket). Call while the child is an unreaped zombie: its pid, which
 * names the files, cannot be anybody else's yet. Any thread. */
void kin__sweep_child_files(pid_t pid, uint32_t id);

/* A child of p was reaped: plans the sweeps of the runtime directory
 * that remove what its descendants left (kin__runtime_sweep) at a few
 * points after the latest reap, never two closer than SWEEP_GAP_MS, so a
 * flood of exits costs a bounded number of readdirs. Broker thread. */
void kin__sweep_after_reap(kin__procs *p);

/* Frees p's sweep state; after the broker thread is gone (it closed the
 * timer). */
void kin__sweep_free(kin__procs *p);

#endif
