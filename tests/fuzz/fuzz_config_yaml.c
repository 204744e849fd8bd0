/* libFuzzer target: bytes -> YAML parser -> validation -> free. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "fuzz_target.h"

static const mp_config_key instance_keys[] = {
    {"host", MP_CFG_STRING, "localhost", 0, "host"},
    {"port", MP_CFG_INT, "993", 0, NULL},
    {"tls", MP_CFG_BOOL, "true", 0, NULL},
    {"labels", MP_CFG_STRING_LIST, "INBOX,Sent", 0, NULL},
    {"token_file", MP_CFG_SECRET_FILE, NULL, 0, NULL},
    {0},
};

static const mp_config_key account_keys[] = {
    {"user", MP_CFG_STRING, NULL, 1, "login"},
    {"password_file", MP_CFG_SECRET_FILE, NULL, 0, NULL},
    {"limit", MP_CFG_INT, NULL, 0, NULL},
    {0},
};

static const char *const core_keys[] = {"driver", "enabled", "poll_interval", "accounts",
                                        NULL};
static const char *const account_core_keys[] = {"id", "enabled", "folders",
                                                "poll_interval", NULL};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mpc_errors errs = {0};
    mpc_node *root = mpc_parse_yaml_string((const char *)data, size, "fuzz.yaml", &errs);
    if (root != NULL) {
        mpc_validate(root, instance_keys, core_keys, &errs);
        const mpc_node *accounts = mpc_get(root, "accounts");
        if (accounts != NULL && accounts->type == MPC_LIST)
            for (size_t i = 0; i < accounts->n_items; i++)
                mpc_validate(accounts->items[i], account_keys, account_core_keys, &errs);
        (void)mpc_string(root, "host");
        (void)mpc_list_string(root, "labels", 0);
    }
    /* Properties, not just absence of crashes: a document that does not
     * parse says why, and every message names the file and a line. */
    FUZZ_ASSERT(root != NULL || errs.n > 0);
    for (size_t i = 0; i < errs.n; i++) {
        const char *m = errs.msgs[i];
        FUZZ_ASSERT(strncmp(m, "fuzz.yaml:", 10) == 0);
        FUZZ_ASSERT(m[10] >= '0' && m[10] <= '9');
    }
    mpc_free(&root);
    mpc_errors_free(&errs);
    return 0;
}
