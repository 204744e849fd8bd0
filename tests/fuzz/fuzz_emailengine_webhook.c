/* libFuzzer target: what an EmailEngine webhook (or anything posting to
 * /push/<instance>) and EE's REST answers feed emailengine.so. The first
 * byte picks the reader; the rest is its input:
 *   0  the webhook signature check then the payload parser, in
 *      push_verify's order: a body only parses once its signature
 *      verified, and the signature we compute always verifies;
 *   1  a message listing page; 2 the mailbox list; 3 an account;
 *   4  a message id's registry number, an ISO date and a cursor.
 * Properties checked: parsed routing fields are NUL-terminated within
 * their bounds and the kind matches the event name; listing entries have
 * ids and UIDs; flags are sorted; a cursor formats back to itself. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ee_cursor.h"
#include "ee_json.h"
#include "ee_sig.h"
#include "ee_webhook.h"
#include "fuzz_target.h"

static const uint8_t key[] = "7f3c9a1e5b2d4c6e8f0a1b2c3d4e5f60";

static void webhook(const char *s, size_t n)
{
    char sig[EE_SIG_LEN + 1];
    FUZZ_ASSERT(ee_sig_compute(key, sizeof key - 1, (const uint8_t *)s, n, sig) == 0);
    FUZZ_ASSERT(ee_sig_verify(key, sizeof key - 1, (const uint8_t *)s, n, sig) == EE_SIG_OK);
    FUZZ_ASSERT(ee_sig_verify(key, sizeof key - 1, (const uint8_t *)s, n, NULL) ==
                EE_SIG_MISSING);
    sig[0] = sig[0] == 'A' ? 'B' : 'A';
    FUZZ_ASSERT(ee_sig_verify(key, sizeof key - 1, (const uint8_t *)s, n, sig) == EE_SIG_BAD);
    ee_webhook w;
    char why[200];
    if (ee_webhook_parse(s, n, &w, why, sizeof why) < 0) {
        FUZZ_ASSERT(why[0] != '\0');
        return;
    }
    FUZZ_ASSERT(w.account[0] != '\0' && strlen(w.account) <= EE_ACCOUNT_MAX);
    FUZZ_ASSERT(w.event[0] != '\0' && strlen(w.event) <= EE_EVENT_MAX);
    FUZZ_ASSERT(strlen(w.path) <= EE_PATH_MAX);
    FUZZ_ASSERT(w.kind == ee_event_kind_of(w.event));
}

static void page(const char *s, size_t n)
{
    ee_page p;
    char why[200];
    if (ee_page_parse(s, n, &p, why, sizeof why) < 0)
        return;
    for (size_t i = 0; i < p.n; i++) {
        FUZZ_ASSERT(p.v[i].id != NULL && p.v[i].id[0] != '\0' && p.v[i].uid > 0);
        FUZZ_ASSERT(p.v[i].flags != NULL);
        /* sorted, no duplicates, single spaces */
        const char *prev = NULL;
        char *copy = strdup(p.v[i].flags), *save = NULL;
        FUZZ_ASSERT(copy != NULL);
        for (char *t = strtok_r(copy, " ", &save); t != NULL; t = strtok_r(NULL, " ", &save)) {
            FUZZ_ASSERT(prev == NULL || strcmp(prev, t) < 0);
            prev = t;
        }
        free(copy);
    }
    ee_page_clear(&p);
}

static void mailboxes(const char *s, size_t n)
{
    ee_mailboxes m;
    char why[200];
    if (ee_mailboxes_parse(s, n, &m, why, sizeof why) < 0)
        return;
    for (size_t i = 0; i < m.n; i++)
        FUZZ_ASSERT(m.v[i].path != NULL && m.v[i].path[0] != '\0' &&
                    ee_mailboxes_find(&m, m.v[i].path) != NULL);
    ee_mailboxes_clear(&m);
}

static void account(const char *s, size_t n)
{
    char state[64], detail[256], why[200], code[64], st[64], msg[256];
    if (ee_account_parse(s, n, state, sizeof state, detail, sizeof detail, why, sizeof why) ==
        0)
        FUZZ_ASSERT(strlen(state) < sizeof state);
    ee_error_parse(s, n, code, sizeof code, st, sizeof st, msg, sizeof msg);
}

static void scalars(const char *s)
{
    int64_t r = ee_id_registry(s);
    FUZZ_ASSERT(r >= -1 && r <= UINT32_MAX);
    (void)ee_parse_date(s);
    ee_cursor c;
    if (ee_cursor_parse(s, &c) == 0) {
        char out[EE_CURSOR_MAX];
        ee_cursor_format(&c, out);
        ee_cursor d;
        FUZZ_ASSERT(ee_cursor_parse(out, &d) == 0 && memcmp(&c, &d, sizeof c) == 0);
    }
    uint32_t below;
    (void)ee_backfill_parse(s, &below);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 65536)
        return 0;
    char *s = malloc(size);
    if (s == NULL)
        return 0;
    memcpy(s, data + 1, size - 1);
    s[size - 1] = '\0';
    switch (data[0] % 5) {
    case 0:
        webhook(s, size - 1);
        break;
    case 1:
        page(s, size - 1);
        break;
    case 2:
        mailboxes(s, size - 1);
        break;
    case 3:
        account(s, size - 1);
        break;
    default:
        scalars(s);
        break;
    }
    free(s);
    return 0;
}
