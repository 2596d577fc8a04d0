/* What file_push.c and file_pull.c share: reading a failed step's error
 * and exporting the pull side's built-ins. */
#ifndef KIN_PROCESS_FILE_XFER_H
#define KIN_PROCESS_FILE_XFER_H

#include <stdint.h>

#include <kin/file.h>
#include <kin/msg.h>

/* A step's result: KIN_OK when e is; else the target's own code when it
 * failed the call itself (kin_call_fail), with its words in o->errbuf, or
 * e with a line saying which step. Frees *reply on failure. */
kin_err kin__file_step(uint32_t ctx, const char *fn, kin_msg **reply,
                       const kin_file_opts *o, kin_err e);

/* file_pull.c: exports kin.file_stat, kin.file_read and kin.file_hash
 * (from kin__push_export, once). */
void kin__pull_export(void);

#endif
