/* kin: multi-process services over ZeroMQ. The umbrella header. */
#ifndef KIN_KIN_H
#define KIN_KIN_H

#include <kin/call.h>
#include <kin/cert.h>
#include <kin/defs.h>
#include <kin/diag.h>
#include <kin/err.h>
#include <kin/file.h>
#include <kin/latch.h>
#include <kin/logs.h>
#include <kin/monitor.h>
#include <kin/msg.h>
#include <kin/node.h>
#include <kin/pack.h>
#include <kin/process.h>
#include <kin/service.h>
#include <kin/supervisor.h>
#include <kin/task.h>

#endif
