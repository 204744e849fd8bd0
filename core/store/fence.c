/* Fencing tokens held by this process (contract in store/fence.h). A
 * small hash table: commits look an account up on every batch, with
 * thousands of accounts held. */
#include "store/fence.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "store/db.h"
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

char *mps_fence_owner(void)
{
    pthread_mutex_lock(&lock);
    char *who = owner != NULL ? mpu_strdup(owner) : NULL;
    pthread_mutex_unlock(&lock);
    return who;
}

/* The lease row as store/lease.h defines it. FOR SHARE: a node claiming
 * the account (an UPDATE of the row) waits until this transaction ends,
 * so our writes land before the next owner's epoch begins; now() is the
 * transaction's start, which is why this runs first in it. */
static const char FENCE_SQL[] =
    "SELECT 1 FROM mp_lease WHERE account = :account AND owner = :owner"
    " AND epoch = :epoch AND expires_at > now() FOR SHARE";

int mps__fence(struct mps_store *s, const char *account, char **error_r)
{
    char *who = NULL;
    int64_t epoch = 0;
    mps_fence_state st = mps_fence_get(account, &who, &epoch);
    if (st == MPS_FENCE_OFF)
        return 0;
    if (st == MPS_FENCE_LOST) {
        if (error_r != NULL)
            *error_r = mpu_asprintf("store: this node holds no lease on account %s: "
                                    "write refused", account);
        return 1;
    }
    /* Only a database shared between nodes has lease rows to check. */
    if (mps__dialect_of(s) != MPS__POSTGRESQL) {
        free(who);
        return 0;
    }
    mps__stmt *stmt = NULL;
    if (mps__prepare(s, FENCE_SQL, &stmt, error_r) < 0) {
        free(who);
        return -1;
    }
    mps__bind_text(stmt, ":account", account);
    mps__bind_text(stmt, ":owner", who);
    mps__bind_int(stmt, ":epoch", epoch);
    int rc = mps__step_row(s, stmt, error_r, "store: lease check");
    mps__finish(s, stmt);
    if (rc == 1 && error_r != NULL)
        *error_r = mpu_asprintf("store: the lease on account %s (epoch %lld) expired or "
                                "passed to another node: write refused by the fence",
                                account, (long long)epoch);
    free(who);
    return rc;
}
