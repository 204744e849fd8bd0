/*
 * mailpulsed --print-keys: everything the daemon and its drivers accept in
 * their configuration, as one JSON object, taken from the very tables the
 * validation uses. The test suite (tests/docs/check_docs.py) compares it
 * with mailpulsed.conf(5), mailpulse-plugins.d(5), the README and the
 * example configuration, so a setting or a driver key added without its
 * documentation fails a test.
 *
 *   {"version": "0.1.0", "abi": "1.2", "driver_dir": "...",
 *    "settings": [{"name": "http.listen", "group": "http", "key": "listen",
 *                  "type": "string", "default": "127.0.0.1:8025",
 *                  "required": false, "help": "..."}, ...],
 *    "plugins": {"instance": ["driver", ...], "account": ["id", ...]},
 *    "drivers": [{"name": "imap", "version": "1.0", "description": "...",
 *                 "poll_interval": 180,
 *                 "instance_keys": [{"name", "type", "default", "required",
 *                                    "help"}, ...],
 *                 "account_keys": [...]}, ...],
 *    "refused": [{"file": "x.so", "error": "..."}]}
 *
 * "group" is null at the top level; "webhooks" keys belong to each entry
 * of that list. "default" is null where there is none. Drivers are every
 * "<name>.so" of the configuration's driver_dir, in name order; one the
 * loader refuses is listed under "refused" with the loader's message.
 */
#ifndef MP_DAEMON_PRINT_KEYS_H
#define MP_DAEMON_PRINT_KEYS_H

#include <stdio.h>

/* Settings from `config_path` (NULL: the embedded default) decide
 * driver_dir. Returns the exit status: 0, or 1 when the settings do not
 * load (errors on stderr). */
int mpd_print_keys(const char *config_path, FILE *out);

#endif
