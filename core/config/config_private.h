/*
 * Private to core/config: building trees and helpers shared by its files.
 * Not part of the module contract (config.h); nothing outside core/config
 * includes this.
 */
#ifndef MP_CONFIG_CONFIG_PRIVATE_H
#define MP_CONFIG_CONFIG_PRIVATE_H

#include "config/config.h"

/* Deepest nesting of maps/lists a parser accepts: keeps every recursive
 * walk (conversion, validation, free) bounded on hostile input. */
#define MPC_MAX_DEPTH 64

/* Largest configuration file read from disk. */
#define MPC_MAX_FILE_SIZE (4u * 1024 * 1024)

/* A new root map whose nodes will point at its copy of `file`. */
mpc_node *mpc_root_new(const char *file, int line);
/* A new node sharing `file` (a pointer owned by the root). */
mpc_node *mpc_node_new(mpc_type type, const char *file, int line);
/* Append `child` (owned afterwards by `parent`). */
void mpc_node_append(mpc_node *parent, mpc_node *child);
/* Free a detached node and its children. */
void mpc_node_free(mpc_node *node);
/* "a string", "an integer", ... for messages. */
const char *mpc_type_name(mpc_type type);
/* Nonzero when `name` is in the NULL-terminated list (which may be NULL). */
int mpc_name_in(const char *name, const char *const *list);

/* webhooks.c: parse the `webhooks` list into s (errors added, count
 * returned); free it. */
size_t mpc__webhooks_fill(const mpc_node *root, mp_settings *s, mpc_errors *errs);
void mpc__webhooks_free(mp_settings *s);
/* webhooks.c: the keys of one `webhooks` entry. */
const mp_config_key *mpc__webhook_keys(void);

/* bus.c: the keys of the optional `bus` group; parse a present group into
 * s->bus (errors added, count returned); free what it allocated. */
const mp_config_key *mpc__bus_keys(void);
size_t mpc__bus_fill(const mpc_node *bus, mp_settings *s, mpc_errors *errs);
void mpc__bus_free(mp_settings *s);

/* Adds "file:line: message" (the "line" part left out when line <= 0, the
 * whole prefix when file is NULL). */
void mpc_error_addv(mpc_errors *errs, const char *file, int line,
                    const char *fmt, va_list ap) MP_PRINTF(4, 0);

#endif
