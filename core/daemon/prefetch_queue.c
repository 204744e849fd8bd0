/* The warm queue (see prefetch.h): per-account FIFO lists per priority, a
 * hash of ids for deduplication, one mutex. Entries carry a global
 * sequence number so "oldest" is well defined across accounts even when
 * the clock does not move between two pushes. */
#include "daemon/prefetch.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

typedef struct pf_acct pf_acct;

typedef struct pf_entry {
    char id[26];
    pf_acct *acct;
    mpd_pf_prio prio;
    uint64_t seq;
    int64_t enqueued_ms;
    struct pf_entry *prev, *next; /* in acct->head[prio]                   */
    struct pf_entry *hnext;       /* hash chain                             */
} pf_entry;

struct pf_acct {
    char name[65];
    pf_entry *head[2], *tail[2];
    pf_acct *next;
};

struct mpd_pfq {
    pthread_mutex_t lock;
    pf_acct *accts;
    size_t n_accts;
    size_t rr;            /* rotates the account served first            */
    pf_entry **buckets;
    size_t n_buckets;
    size_t n;
    uint64_t seq;
    uint64_t dropped;
};

#define INITIAL_BUCKETS 256u

static size_t hash_id(const char *id, size_t n_buckets)
{
    /* FNV-1a; ids are hex digests already, any mix will do. */
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)id; *p != '\0'; p++) {
        h ^= *p;
        h *= 1099511628211ULL;
    }
    return (size_t)(h % n_buckets);
}

mpd_pfq *mpd_pfq_new(void)
{
    mpd_pfq *q = mpu_calloc(1, sizeof *q);
    pthread_mutex_init(&q->lock, NULL);
    q->n_buckets = INITIAL_BUCKETS;
    q->buckets = mpu_calloc(q->n_buckets, sizeof *q->buckets);
    return q;
}

void mpd_pfq_free(mpd_pfq **qp)
{
    if (qp == NULL || *qp == NULL)
        return;
    mpd_pfq *q = *qp;
    for (size_t b = 0; b < q->n_buckets; b++) {
        pf_entry *e = q->buckets[b];
        while (e != NULL) {
            pf_entry *next = e->hnext;
            free(e);
            e = next;
        }
    }
    free(q->buckets);
    pf_acct *a = q->accts;
    while (a != NULL) {
        pf_acct *next = a->next;
        free(a);
        a = next;
    }
    pthread_mutex_destroy(&q->lock);
    free(q);
    *qp = NULL;
}

static pf_entry **hash_slot(mpd_pfq *q, const char *id)
{
    pf_entry **slot = &q->buckets[hash_id(id, q->n_buckets)];
    while (*slot != NULL && strcmp((*slot)->id, id) != 0)
        slot = &(*slot)->hnext;
    return slot;
}

static void hash_grow(mpd_pfq *q)
{
    size_t nb = q->n_buckets * 2;
    pf_entry **buckets = mpu_calloc(nb, sizeof *buckets);
    for (size_t b = 0; b < q->n_buckets; b++) {
        pf_entry *e = q->buckets[b];
        while (e != NULL) {
            pf_entry *next = e->hnext;
            size_t h = hash_id(e->id, nb);
            e->hnext = buckets[h];
            buckets[h] = e;
            e = next;
        }
    }
    free(q->buckets);
    q->buckets = buckets;
    q->n_buckets = nb;
}

static pf_acct *acct_find(mpd_pfq *q, const char *name)
{
    pf_acct **link = &q->accts;
    for (; *link != NULL; link = &(*link)->next)
        if (strcmp((*link)->name, name) == 0)
            return *link;
    /* Appended: the round-robin order is the order accounts first queued. */
    pf_acct *a = mpu_calloc(1, sizeof *a);
    mpu_strlcpy(a->name, name, sizeof a->name);
    *link = a;
    q->n_accts++;
    return a;
}

static void list_append(pf_entry *e)
{
    pf_acct *a = e->acct;
    e->next = NULL;
    e->prev = a->tail[e->prio];
    if (e->prev != NULL)
        e->prev->next = e;
    else
        a->head[e->prio] = e;
    a->tail[e->prio] = e;
}

static void list_unlink(pf_entry *e)
{
    pf_acct *a = e->acct;
    if (e->prev != NULL)
        e->prev->next = e->next;
    else
        a->head[e->prio] = e->next;
    if (e->next != NULL)
        e->next->prev = e->prev;
    else
        a->tail[e->prio] = e->prev;
    e->prev = e->next = NULL;
}

/* Unlink from its list and the hash, and free. */
static void entry_remove(mpd_pfq *q, pf_entry *e)
{
    list_unlink(e);
    pf_entry **slot = hash_slot(q, e->id);
    *slot = e->hnext;
    q->n--;
    free(e);
}

/* The oldest entry of a priority over all accounts (heads are the oldest
 * of each account). */
static pf_entry *oldest(mpd_pfq *q, mpd_pf_prio prio)
{
    pf_entry *best = NULL;
    for (pf_acct *a = q->accts; a != NULL; a = a->next)
        if (a->head[prio] != NULL && (best == NULL || a->head[prio]->seq < best->seq))
            best = a->head[prio];
    return best;
}

int mpd_pfq_push(mpd_pfq *q, const char *account, const char *id, mpd_pf_prio prio,
                 size_t max, int64_t now_ms)
{
    if (account == NULL || id == NULL || *id == '\0' || strlen(account) > 64 ||
        strlen(id) > 25 || max == 0 || (prio != MPD_PF_HIGH && prio != MPD_PF_NORMAL))
        return -1;
    pthread_mutex_lock(&q->lock);
    int rc;
    pf_entry **slot = hash_slot(q, id);
    if (*slot != NULL) {
        pf_entry *e = *slot;
        rc = 0;
        if (prio == MPD_PF_HIGH && e->prio == MPD_PF_NORMAL) {
            list_unlink(e);
            e->prio = MPD_PF_HIGH;
            e->seq = ++q->seq;
            list_append(e);
            rc = 2;
        }
        pthread_mutex_unlock(&q->lock);
        return rc;
    }
    pf_entry *e = mpu_calloc(1, sizeof *e);
    mpu_strlcpy(e->id, id, sizeof e->id);
    e->acct = acct_find(q, account);
    e->prio = prio;
    e->seq = ++q->seq;
    e->enqueued_ms = now_ms;
    list_append(e);
    *slot = e;
    q->n++;
    rc = 1;
    while (q->n > max) {
        pf_entry *victim = oldest(q, MPD_PF_NORMAL);
        if (victim == NULL)
            victim = oldest(q, MPD_PF_HIGH);
        entry_remove(q, victim);
        q->dropped++;
    }
    if (q->n > q->n_buckets * 2)
        hash_grow(q);
    pthread_mutex_unlock(&q->lock);
    return rc;
}

size_t mpd_pfq_take(mpd_pfq *q, size_t per_account, mpd_pf_item **items_r)
{
    *items_r = NULL;
    pthread_mutex_lock(&q->lock);
    if (per_account == 0 || q->n == 0 || q->n_accts == 0) {
        pthread_mutex_unlock(&q->lock);
        return 0;
    }
    size_t cap = q->n < per_account * q->n_accts ? q->n : per_account * q->n_accts;
    mpd_pf_item *items = mpu_calloc(cap, sizeof *items);
    size_t k = 0;
    size_t start = q->rr++ % q->n_accts;
    for (size_t round = 0; round < per_account && k < cap; round++) {
        size_t before = k;
        /* Walk the account list from `start`, wrapping around. */
        pf_acct *a = q->accts;
        for (size_t i = 0; i < start; i++)
            a = a->next;
        for (size_t i = 0; i < q->n_accts && k < cap; i++) {
            pf_entry *e = a->head[MPD_PF_HIGH] != NULL ? a->head[MPD_PF_HIGH]
                                                       : a->head[MPD_PF_NORMAL];
            if (e != NULL) {
                mpd_pf_item *it = &items[k++];
                mpu_strlcpy(it->account, a->name, sizeof it->account);
                mpu_strlcpy(it->id, e->id, sizeof it->id);
                it->prio = e->prio;
                it->enqueued_ms = e->enqueued_ms;
                entry_remove(q, e);
            }
            a = a->next != NULL ? a->next : q->accts;
        }
        if (k == before)
            break;
    }
    pthread_mutex_unlock(&q->lock);
    if (k == 0) {
        free(items);
        return 0;
    }
    *items_r = items;
    return k;
}

size_t mpd_pfq_len(mpd_pfq *q)
{
    pthread_mutex_lock(&q->lock);
    size_t n = q->n;
    pthread_mutex_unlock(&q->lock);
    return n;
}

uint64_t mpd_pfq_dropped(mpd_pfq *q)
{
    pthread_mutex_lock(&q->lock);
    uint64_t n = q->dropped;
    pthread_mutex_unlock(&q->lock);
    return n;
}
