/* Staging of sync batches; commit.c writes them. */
#include "store/store-private.h"

#include <stdlib.h>
#include <string.h>

#include "util/util.h"

mps_batch *mps_batch_new(const char *account, const char *folder)
{
    mps_batch *b = mpu_calloc(1, sizeof *b);
    b->account = mpu_strdup(account);
    b->folder = mpu_strdup(folder);
    return b;
}

void mps_batch_add(mps_batch *b, const mp_change *change)
{
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 32;
        b->changes = mpu_realloc(b->changes, b->cap * sizeof *b->changes);
    }
    mp_change *c = &b->changes[b->n++];
    *c = *change;
    c->id = mpu_strdup(change->id);
    c->old_id = mpu_strdup(change->old_id);
    c->ref = mpu_strdup(change->ref);
    c->message_id = mpu_strdup(change->message_id);
    c->subject = mpu_strdup(change->subject);
    c->from = mpu_strdup(change->from);
    c->to = mpu_strdup(change->to);
    c->thread_id = mpu_strdup(change->thread_id);
    c->flags = mpu_strdup(change->flags);
    c->raw = NULL;
    c->raw_len = 0;
    if (change->raw != NULL) {
        uint8_t *raw = mpu_malloc(change->raw_len);
        if (change->raw_len > 0)
            memcpy(raw, change->raw, change->raw_len);
        c->raw = raw;
        c->raw_len = change->raw_len;
        b->raw_bytes += change->raw_len;
    }
}

void mps_batch_on_new(mps_batch *b, mps_new_message_cb cb, void *arg)
{
    b->on_new = cb;
    b->on_new_arg = arg;
}

size_t mps_batch_pending(const mps_batch *b)
{
    return b->n;
}

size_t mps_batch_pending_bytes(const mps_batch *b)
{
    return b->raw_bytes;
}

void mps_batch_reset(mps_batch *b, const char *reason)
{
    /* Several resets before one commit are one reset of the folder. */
    b->reset = 1;
    free(b->reset_reason);
    b->reset_reason = mpu_strdup(reason);
}

/* The staged copies are ours: the const in mp_change is the driver-facing
 * view only. */
static void free_const(const void *p)
{
    free((void *)p);
}

void mps__batch_clear(mps_batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        mp_change *c = &b->changes[i];
        free_const(c->id);
        free_const(c->old_id);
        free_const(c->ref);
        free_const(c->message_id);
        free_const(c->subject);
        free_const(c->from);
        free_const(c->to);
        free_const(c->thread_id);
        free_const(c->flags);
        free_const(c->raw);
    }
    b->n = 0;
    b->raw_bytes = 0;
    b->reset = 0;
    free(b->reset_reason);
    b->reset_reason = NULL;
}

void mps_batch_free(mps_batch **b)
{
    if (b == NULL || *b == NULL)
        return;
    mps__batch_clear(*b);
    free((*b)->changes);
    free((*b)->account);
    free((*b)->folder);
    free(*b);
    *b = NULL;
}
