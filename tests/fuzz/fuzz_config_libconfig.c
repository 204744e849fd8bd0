/* libFuzzer target: bytes -> libconfig parser -> validation -> free. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "fuzz_target.h"

static const mp_config_key top_keys[] = {
    {"state_dir", MP_CFG_STRING, "/var/lib/mailpulse", 0, NULL},
    {"workers", MP_CFG_INT, "4", 0, "1..64"},
    {"debug", MP_CFG_BOOL, "false", 0, NULL},
    {"names", MP_CFG_STRING_LIST, "", 0, NULL},
    {0},
};

static const mp_config_key group_keys[] = {
    {"listen", MP_CFG_STRING, "127.0.0.1:8025", 0, NULL},
    {"max_body", MP_CFG_INT, NULL, 1, "bytes"},
    {"token_file", MP_CFG_SECRET_FILE, NULL, 0, NULL},
    {0},
};

static const char *const groups[] = {"http", NULL};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* libconfig reads NUL-terminated text. */
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    mpc_errors errs = {0};
    mpc_node *root = mpc_parse_libconfig_string(text, "fuzz.conf", &errs);
    if (root != NULL) {
        mpc_validate(root, top_keys, groups, &errs);
        mpc_node *http = (mpc_node *)mpc_get(root, "http");
        if (http != NULL)
            mpc_validate(http, group_keys, NULL, &errs);
        (void)mpc_int(root, "workers");
        (void)mpc_list_len(root, "names");
    }
    /* Properties, not just absence of crashes: a document that does not
     * parse says why, and every message names the file and a line. */
    FUZZ_ASSERT(root != NULL || errs.n > 0);
    for (size_t i = 0; i < errs.n; i++) {
        const char *m = errs.msgs[i];
        FUZZ_ASSERT(strncmp(m, "fuzz.conf:", 10) == 0);
        FUZZ_ASSERT(m[10] >= '0' && m[10] <= '9');
    }
    mpc_free(&root);
    mpc_errors_free(&errs);
    free(text);
    return 0;
}
