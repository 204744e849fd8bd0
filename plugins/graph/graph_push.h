/*
 * graph.so push: one change-notification subscription per synced folder
 * (README "Outlook push" says why per folder), its set kept in driver
 * state, renewed, recreated and reconciled on worker threads
 * (graph_push.c), and the webhook verified on the loop thread
 * (graph_webhook.c).
 *
 * The host stores ONE mp_subscription per account. It carries the set's
 * earliest expiry (so the host calls push_renew in time for all of them)
 * and the inbox subscription's id and clientState; the whole set, each
 * with its own random clientState, lives in the driver state record
 * "push:subs" and in memory (graph_push_acct), indexed per instance for
 * push_verify (graph_push_inst). Everything in these structs is guarded
 * by graph_push_inst.lock; network calls happen outside it.
 */
#ifndef GRAPH_PUSH_H
#define GRAPH_PUSH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <mailpulse/driver.h>

#include "graph_notify.h"

struct graph_account;
struct graph_instance;

/* Graph's longest lifetime for mail subscriptions (10080 min) was once
 * 4230 min; a tenant refusing the former gets the latter. */
#define GRAPH_SUB_FALLBACK_MINUTES 4230
/* Default of `folder_subscriptions_max`: at most this many folder
 * subscriptions per mailbox (Graph allows 1000 per mailbox for ALL apps
 * together); more synced folders than this and one mailbox-wide
 * subscription replaces them. */
#define GRAPH_SUB_MAX_FOLDERS 200
#define GRAPH_SUBS_KEY "push:subs"

typedef struct graph_sub {
    char *id;           /* Graph's subscriptionId */
    char *folder_id;    /* NULL: the mailbox-wide subscription (all folders) */
    char *folder;       /* the folder's name at the host; NULL: mailbox-wide */
    char *secret;       /* clientState: 32 random bytes, base64url */
    int64_t expires_at; /* Unix seconds, as Graph answered */
} graph_sub;

typedef struct graph_push_acct {
    graph_sub *subs;
    size_t n, cap;
    /* subscription ids with a lifecycle action for the next worker slot */
    char **reauth;
    size_t n_reauth;
    char **recreate;
    size_t n_recreate;
    /* lifecycle events received (verified), by graph_note_kind - 1 */
    uint64_t events[GRAPH_NOTE_LIFECYCLE_N];
    int profile_dirty;
    int enrolled;   /* push_enroll succeeded (or a set was restored) */
    int failing;    /* the last subscribe/renew pass failed: not live */
    char **allowed; /* the account's `folders` allowlist, NULL: all */
    size_t n_allowed;
} graph_push_acct;

typedef struct graph_push_inst {
    pthread_mutex_t lock;
    struct graph_account **accounts; /* open accounts, for push_verify */
    size_t n, cap;
    int64_t minutes;     /* lifetime asked; drops to the fallback once */
    size_t max_folders;  /* folder_subscriptions_max */
    char *notify_url;    /* <public_url>/push/<instance> */
    char *lifecycle_url; /* notify_url + "/lifecycle" */
    /* Validation requests this instance answered: a create that Graph
     * validated without one reached another receiver (graph_push.c). */
    atomic_ulong validations;
} graph_push_inst;

/* ---- the set (graph_subs.c) ---- */

/* A fresh clientState: 32 bytes of RAND_bytes, base64url without padding
 * (43 chars; malloc'd). NULL when the RNG failed. */
char *graph_client_state(void);
/* Constant-time comparison of a received clientState with the stored one. */
int graph_client_state_ok(const char *stored, const char *given, size_t given_len);

void graph_sub_clear(graph_sub *s);
/* Append a copy of `s` (strings duplicated). */
void graph_subs_add(graph_push_acct *p, const graph_sub *s);
/* Remove entry i (freed). */
void graph_subs_remove(graph_push_acct *p, size_t i);
void graph_subs_free(graph_push_acct *p);
/* The set as the driver-state record (JSON, malloc'd) and back; parse
 * returns -1 for a record it cannot read (then the set is empty). */
char *graph_subs_dump(const graph_push_acct *p);
int graph_subs_parse(const char *text, graph_push_acct *p);

/* ---- instance and account lifecycle (graph_push.c) ---- */

/* Instance: builds the URLs (public_url NULL: no push). */
graph_push_inst *graph_push_inst_new(const char *public_url, const char *instance,
                                     int64_t minutes, size_t max_folders);
void graph_push_inst_free(graph_push_inst *pi);
/* Account (loop thread): register for push_verify, restore the stored set
 * (state_get), read the allowlist. Close: unregister and free. */
void graph_push_open(struct graph_account *a, const mp_config *cfg);
void graph_push_close(struct graph_account *a);

/* ---- worker side (graph_push.c) ---- */

mp_status graph_push_enroll(mp_account *acct, mp_subscription *sub_r, mp_error *err);
mp_status graph_push_renew(mp_account *acct, const mp_subscription *current,
                           mp_subscription *sub_r, mp_error *err);
mp_status graph_push_cancel(mp_account *acct, const mp_subscription *current,
                            mp_error *err);
/* Queue subscription `id` for a lifecycle action on v (reauth or
 * recreate), once. Caller holds the instance's push lock. */
void graph_push_queue_once(char ***v, size_t *n, const char *id);
/* From the poll slots (delta, bootstrap of `folder`): carry out the
 * lifecycle actions push_verify queued (reauthorize, recreate), and those
 * the run's push hints name (verified on another node of a cluster), and
 * publish the counters. */
void graph_push_service(struct graph_account *a, const char *folder);
/* From list_folders after a fresh folder table: subscribe new folders,
 * delete the subscriptions of folders that are gone. */
void graph_push_folders_changed(struct graph_account *a);

/* Publish the profile (setup parameters, the set, the lifecycle counters)
 * without touching the push state; for the preflight (graph_check.c). */
void graph_push_profile(struct graph_account *a);

/* ---- loop thread (graph_webhook.c) ---- */

mp_status graph_push_verify(mp_instance *inst, const mp_push_request *req,
                            mp_push_reply *reply, mp_error *err);

#endif /* GRAPH_PUSH_H */
