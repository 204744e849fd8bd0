/* A ring of recent webhook event ids (ee_dedupe.h). */
#include "ee_dedupe.h"

#include <stdlib.h>
#include <string.h>

struct ee_dedupe {
    size_t n;    /* ids held, at most EE_DEDUPE_CAP                        */
    size_t next; /* slot the next add overwrites                           */
    char ids[EE_DEDUPE_CAP][EE_DEDUPE_ID_MAX + 1];
};

ee_dedupe *ee_dedupe_new(void)
{
    return calloc(1, sizeof(ee_dedupe));
}

void ee_dedupe_free(ee_dedupe **d_p)
{
    if (d_p == NULL)
        return;
    free(*d_p);
    *d_p = NULL;
}

bool ee_dedupe_contains(const ee_dedupe *d, const char *id)
{
    if (d == NULL || id == NULL || id[0] == '\0' || strlen(id) > EE_DEDUPE_ID_MAX)
        return false;
    for (size_t i = 0; i < d->n; i++)
        if (strcmp(d->ids[i], id) == 0)
            return true;
    return false;
}

int ee_dedupe_add(ee_dedupe *d, const char *id)
{
    if (d == NULL || id == NULL || id[0] == '\0')
        return -1;
    size_t len = strlen(id);
    if (len > EE_DEDUPE_ID_MAX)
        return -1;
    if (ee_dedupe_contains(d, id))
        return 0;
    memcpy(d->ids[d->next], id, len + 1);
    d->next = (d->next + 1) % EE_DEDUPE_CAP;
    if (d->n < EE_DEDUPE_CAP)
        d->n++;
    return 1;
}

size_t ee_dedupe_count(const ee_dedupe *d)
{
    return d == NULL ? 0 : d->n;
}
