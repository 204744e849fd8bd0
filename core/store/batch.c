/* Staging of sync batches; commit.c writes them. */
#include "store/store-shared.h"

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

static char **copy_names(const char *const *names, size_t n)
{
    if (n == 0)
        return NULL;
    char **out = mpu_malloc(n * sizeof *out);
    for (size_t i = 0; i < n; i++)
        out[i] = mpu_strdup(names[i] != NULL ? names[i] : ""); /* "": skipped */
    return out;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

static void mem_free(struct mps__mem *m)
{
    if (m == NULL)
        return;
    free_names(m->folders, m->n_folders);
    free_names(m->added, m->n_added);
    free_names(m->removed, m->n_removed);
    free(m);
}

void mps_batch_add_in(mps_batch *b, const mp_change *change, const mps_membership *mem)
{
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 32;
        b->changes = mpu_realloc(b->changes, b->cap * sizeof *b->changes);
        b->mems = mpu_realloc(b->mems, b->cap * sizeof *b->mems);
    }
    struct mps__mem *m = NULL;
    if (mem != NULL) {
        m = mpu_calloc(1, sizeof *m);
        m->has_set = mem->folders != NULL;
        m->n_folders = m->has_set ? mem->n_folders : 0;
        m->folders = copy_names(mem->folders, m->n_folders);
        m->n_added = mem->added != NULL ? mem->n_added : 0;
        m->added = copy_names(mem->added, m->n_added);
        m->n_removed = mem->removed != NULL ? mem->n_removed : 0;
        m->removed = copy_names(mem->removed, m->n_removed);
    }
    b->mems[b->n] = m;
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

void mps_batch_add(mps_batch *b, const mp_change *change)
{
    mps_batch_add_in(b, change, NULL);
}

void mps_batch_move(mps_batch *b, const char *provider_id, const char *from,
                    const char *to)
{
    mp_change c = {.kind = MP_CHANGE_UPDATED, .id = provider_id, .size = -1};
    mps_membership mem = {
        .added = &to,
        .n_added = to != NULL,
        .removed = &from,
        .n_removed = from != NULL,
    };
    mps_batch_add_in(b, &c, &mem);
}

void mps_batch_account_cursor(mps_batch *b, const char *cursor)
{
    free(b->account_cursor);
    b->account_cursor = mpu_strdup(cursor);
    b->has_account_cursor = 1;
}

void mps_batch_state(mps_batch *b, const char *key, const char *value)
{
    if (key == NULL)
        return;
    for (size_t i = 0; i < b->n_state; i++) {
        if (strcmp(b->state[i].key, key) == 0) {
            free(b->state[i].value);
            b->state[i].value = mpu_strdup(value);
            return;
        }
    }
    b->state = mpu_realloc(b->state, (b->n_state + 1) * sizeof *b->state);
    b->state[b->n_state++] = (struct mps__state_rec){mpu_strdup(key), mpu_strdup(value)};
}

mps_batch *mps_batch_split(mps_batch *b)
{
    mps_batch *out = mps_batch_new(b->account, b->folder);
    out->changes = b->changes;
    out->mems = b->mems;
    out->n = b->n;
    out->cap = b->cap;
    out->raw_bytes = b->raw_bytes;
    out->reset = b->reset;
    out->reset_reason = b->reset_reason;
    out->on_new = b->on_new;
    out->on_new_arg = b->on_new_arg;
    b->changes = NULL;
    b->mems = NULL;
    b->n = b->cap = 0;
    b->raw_bytes = 0;
    b->reset = 0;
    b->reset_reason = NULL;
    return out;
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
        mem_free(b->mems[i]);
        b->mems[i] = NULL;
    }
    b->n = 0;
    for (size_t i = 0; i < b->n_state; i++) {
        free(b->state[i].key);
        free(b->state[i].value);
    }
    free(b->state);
    b->state = NULL;
    b->n_state = 0;
    free(b->account_cursor);
    b->account_cursor = NULL;
    b->has_account_cursor = 0;
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
    free((*b)->mems);
    free((*b)->account);
    free((*b)->folder);
    free(*b);
    *b = NULL;
}
