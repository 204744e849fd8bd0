/* Fencing tokens held by this process (contract in store/fence.h). A
 * small hash table: commits look an account up on every batch, with
 * thousands of accounts held. */
#include "store/fence.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

typedef struct fence_entry {
    char *account;
    int64_t epoch;
    struct fence_entry *next;
} fence_entry;

#define FENCE_BUCKETS 4096u

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char *owner;                   /* NULL: fencing off */
static fence_entry *buckets[FENCE_BUCKETS];

static unsigned bucket_of(const char *account)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)account; *p != '\0'; p++)
        h = (h ^ *p) * 16777619u;
    return h % FENCE_BUCKETS;
}

static fence_entry **find(const char *account)
{
    fence_entry **e = &buckets[bucket_of(account)];
    while (*e != NULL && strcmp((*e)->account, account) != 0)
        e = &(*e)->next;
    return e;
}

static void clear_all(void)
{
    for (unsigned i = 0; i < FENCE_BUCKETS; i++) {
        while (buckets[i] != NULL) {
            fence_entry *e = buckets[i];
            buckets[i] = e->next;
            free(e->account);
            free(e);
        }
    }
}

void mps_fence_enable(const char *who)
{
    pthread_mutex_lock(&lock);
    clear_all();
    free(owner);
    owner = mpu_strdup(who);
    pthread_mutex_unlock(&lock);
}

void mps_fence_disable(void)
{
    pthread_mutex_lock(&lock);
    clear_all();
    free(owner);
    owner = NULL;
    pthread_mutex_unlock(&lock);
}

void mps_fence_set(const char *account, int64_t epoch)
{
    pthread_mutex_lock(&lock);
    fence_entry **e = find(account);
    if (*e == NULL) {
        *e = mpu_calloc(1, sizeof **e);
        (*e)->account = mpu_strdup(account);
    }
    (*e)->epoch = epoch;
    pthread_mutex_unlock(&lock);
}

void mps_fence_clear(const char *account)
{
    pthread_mutex_lock(&lock);
    fence_entry **e = find(account);
    if (*e != NULL) {
        fence_entry *gone = *e;
        *e = gone->next;
        free(gone->account);
        free(gone);
    }
    pthread_mutex_unlock(&lock);
}

mps_fence_state mps_fence_get(const char *account, char **owner_r, int64_t *epoch_r)
{
    mps_fence_state st = MPS_FENCE_OFF;
    pthread_mutex_lock(&lock);
    if (owner != NULL) {
        fence_entry *e = *find(account);
        st = e != NULL ? MPS_FENCE_HELD : MPS_FENCE_LOST;
        if (e != NULL) {
            *owner_r = mpu_strdup(owner);
            *epoch_r = e->epoch;
        }
    }
    pthread_mutex_unlock(&lock);
    return st;
}
