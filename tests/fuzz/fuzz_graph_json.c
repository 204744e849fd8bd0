/* libFuzzer target: graph.so's readers of what Graph (or anything posing
 * as it) sends: a list/delta page, a $batch answer, an OData error, a
 * DateTimeOffset, and the driver's own folder record read back from the
 * store. The first byte picks the reader; the rest is its input. Properties
 * checked: a page's items all have ids and its links are non-empty; a
 * summary's flags are NULL exactly when isRead is unknown; a parsed time
 * formats and parses back to itself; a record dumps to text that parses
 * to the same record. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_target.h"
#include "graph_fstate.h"
#include "graph_json.h"

static void page(const char *s, size_t n)
{
    graph_page p;
    char *error = NULL;
    if (graph_page_parse(s, n, &p, &error) < 0) {
        FUZZ_ASSERT(error != NULL);
        free(error);
        return;
    }
    for (size_t i = 0; i < p.n; i++) {
        FUZZ_ASSERT(p.v[i].id != NULL && p.v[i].id[0] != '\0');
        char *flags = graph_msg_flags(&p.v[i]);
        FUZZ_ASSERT((flags == NULL) == (p.v[i].is_read < 0));
        free(flags);
    }
    FUZZ_ASSERT(p.next_link == NULL || p.next_link[0] != '\0');
    FUZZ_ASSERT(p.delta_link == NULL || p.delta_link[0] != '\0');
    graph_page_clear(&p);
}

static void batch(const char *s, size_t n)
{
    graph_part parts[20];
    char *error = NULL;
    if (graph_batch_parse(s, n, parts, 20, &error) < 0) {
        free(error);
        return;
    }
    for (size_t i = 0; i < 20; i++) {
        graph_msg m;
        if (parts[i].present && parts[i].body != NULL &&
            graph_msg_from_json(parts[i].body, &m, &error) == 0)
            graph_msg_clear(&m);
        else
            free(error);
        error = NULL;
    }
    graph_parts_clear(parts, 20);
}

static void error_and_time(const char *s, size_t n)
{
    char code[64], msg[128];
    graph_error_parse(s, n, code, sizeof code, msg, sizeof msg);
    (void)graph_sync_state_gone(code);
    char *z = strndup(s, n);
    if (z == NULL)
        return;
    int64_t t;
    if (graph_time_parse(z, &t) == 0 && t >= 0 && t < 253402300800LL) {
        char buf[32];
        int64_t back;
        graph_time_format(t, buf, sizeof buf);
        FUZZ_ASSERT(graph_time_parse(buf, &back) == 0 && back == t);
    }
    free(z);
}

static void record(const char *s, size_t n)
{
    char *z = strndup(s, n);
    if (z == NULL)
        return;
    graph_fstate f, g;
    char *error = NULL;
    if (graph_fstate_parse(z, &f, &error) == 0) {
        FUZZ_ASSERT(f.n_repair <= GRAPH_REPAIR_MAX);
        char *text = graph_fstate_dump(&f);
        FUZZ_ASSERT(graph_fstate_parse(text, &g, &error) == 0);
        FUZZ_ASSERT(g.n_repair == f.n_repair && g.cover == f.cover &&
                    g.since_ms == f.since_ms && g.checked == f.checked);
        free(text);
        graph_fstate_clear(&g);
        graph_fstate_clear(&f);
    } else {
        free(error);
    }
    free(z);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 200000)
        return 0;
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    switch (data[0] % 4) {
    case 0:
        page(s, n);
        break;
    case 1:
        batch(s, n);
        break;
    case 2:
        error_and_time(s, n);
        break;
    default:
        record(s, n);
        break;
    }
    return 0;
}
