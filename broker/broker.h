/* The broker: one I/O thread per context running a libuv loop. It watches
 * every ZMQ socket of the context (uv_poll on ZMQ_FD) and receives on
 * them, runs timers, and runs work deferred from other threads. A
 * socket's owner may let other threads send on it under a lock of its own
 * (the router's up and down sockets, docs/design.md "Direct sends"); such
 * a sender must then check ZMQ_EVENTS and, on POLLIN, have
 * kin__broker_touch called on the broker thread (a defer), for its send
 * may have consumed the ZMQ_FD edge. A watch made lendable may be
 * borrowed by another thread that receives on the socket meanwhile
 * (kin__watch_lend; docs/design.md "A caller that reads its own reply").
 * Internal to kin. */
#ifndef KIN_BROKER_H
#define KIN_BROKER_H

#include <stdbool.h>

#include <uv.h>

#include <kin/err.h>

typedef struct kin__broker kin__broker;
typedef struct kin__watch kin__watch;

typedef void (*kin__defer_fn)(void *arg, void *data);

/* Called while sock may have input: receives at most one message with
 * ZMQ_DONTWAIT and returns whether there was one (false on EAGAIN, which
 * ends the drain). Broker thread. */
typedef bool (*kin__readable_fn)(void *sock, void *arg);

/* Called on the broker thread when a stop begins, before the grace period
 * starts, so the owner can wind down (notify peers, close sockets). */
typedef void (*kin__stop_fn)(void *arg);

/* A new broker whose thread is running. on_stop (optional) is called once on
 * the broker thread when kin__broker_stop begins. Errors: -ENOMEM, -errno
 * from thread or loop creation. Any thread. */
kin_err kin__broker_new(kin__broker **out, kin__stop_fn on_stop, void *arg);

/* Stops the broker: calls on_stop, then runs the loop until there is no
 * deferred work, or grace_ms has passed (then forces), closes
 * every handle and joins the thread. Then frees it; *b = NULL. NULL-safe.
 * Any thread but the broker's. */
void kin__broker_destroy(kin__broker **b, int grace_ms);

/* Runs fn(arg, data) on the broker thread, in order with other deferred calls.
 * Errors: KIN_ESHUTDOWN once a stop has begun (fn will never run), -ENOMEM.
 * Any thread (from the broker thread it still defers). */
kin_err kin__broker_defer(kin__broker *b, kin__defer_fn fn, void *arg,
                          void *data);

/* Whether the calling thread is b's broker thread. */
bool kin__broker_on_thread(const kin__broker *b);

/* b's loop, for timers and polls. Broker thread only. */
uv_loop_t *kin__broker_loop(kin__broker *b);

/* Whether a stop has begun (timers must not be armed then). Any thread. */
bool kin__broker_stopping(const kin__broker *b);

/* Watches a ZMQ socket: fn runs while the socket has input (ZMQ_FD is
 * edge-triggered, so the broker re-checks ZMQ_EVENTS after every loop turn).
 * Errors: -errno. Broker thread only. */
kin_err kin__broker_watch(kin__broker *b, void *sock, kin__readable_fn fn,
                          void *arg, kin__watch **out);

/* Like kin__broker_watch, for a socket another thread may also read from,
 * one at a time with the broker (under a lock of the owner's): such a
 * thread can *borrow* the watch, so that the socket's input wakes it and
 * not the broker (docs/design.md, "A caller that reads its own reply").
 * The broker polls an epoll set holding the socket's ZMQ_FD. Errors:
 * -errno. Broker thread only. */
kin_err kin__broker_watch_lendable(kin__broker *b, void *sock,
                                   kin__readable_fn fn, void *arg,
                                   kin__watch **out);

/* Lends w (made by kin__broker_watch_lendable): until kin__watch_return,
 * input on its socket no longer wakes the broker, which still drains the
 * socket when touched or deferred to. The borrower polls the socket's
 * ZMQ_FD (kin__watch_fd) itself and must see that all input gets read: its
 * own receives until EAGAIN, or a drain deferred to the broker. Errors:
 * -EINVAL (not lendable), -errno. Any thread, under the owner's lock, and
 * only while the broker runs (the watch goes with it). */
kin_err kin__watch_lend(kin__watch *w);
/* Gives a lent w back: input from now on wakes the broker again (a signal
 * still pending on ZMQ_FD wakes it at once). The returner must then check
 * ZMQ_EVENTS and defer a drain on POLLIN, as a direct sender does. */
void kin__watch_return(kin__watch *w);
/* w's socket's ZMQ_FD. Any thread. */
int kin__watch_fd(const kin__watch *w);

/* Marks w's socket as used (sent on): the broker re-checks its input
 * before the loop next blocks, since the send may have consumed the
 * ZMQ_FD edge. Broker thread only. */
void kin__broker_touch(kin__watch *w);

/* Stops watching (the socket is not closed); *w = NULL. NULL-safe. Broker
 * thread only. */
void kin__broker_unwatch(kin__watch **w);

/* zmq_setsockopt of an int option, for the options whose failure leaves a
 * working socket (high-water marks, linger, heartbeats): the result is
 * ignored. The socket's owner thread. */
void kin__zmq_set_int(void *sock, int opt, int v);

#endif
