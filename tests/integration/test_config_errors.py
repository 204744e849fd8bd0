"""mailpulsed --check-config: exit status and "file:line: message" errors for
plugins.d YAML and mailpulsed.conf, and secrets never echoed."""

import subprocess
import unittest

import mptest

SECRET = "s3cr3t-Value-That-Must-Not-Leak"


class ConfigErrors(unittest.TestCase):
    def setUp(self):
        self.d = mptest.Daemon(name="config")
        self.secret_file = self.d.write_secret("hook.secret", SECRET.encode())

    def check(self):
        r = subprocess.run([self.d.binary, "-c", self.d.conf_path, "--check-config"],
                           capture_output=True, text=True, timeout=60)
        self.assertNotIn(SECRET, r.stdout + r.stderr, "a secret value was printed")
        return r

    def error_lines(self, r):
        return [line for line in r.stderr.splitlines() if line.strip()]

    def assert_error_at(self, r, path, line, *words):
        self.assertEqual(r.returncode, 1, "exit status; stderr:\n" + r.stderr)
        prefix = "%s:%d:" % (path, line)
        hits = [l for l in self.error_lines(r) if l.startswith(prefix)]
        self.assertTrue(hits, "no error starting with %r in:\n%s" % (prefix, r.stderr))
        for word in words:
            self.assertTrue(any(word in h for h in hits),
                            "%r not mentioned in %r" % (word, hits))

    def write_yaml(self, name, lines):
        return self.d.write_instance(name, "\n".join(lines) + "\n")

    def valid_instance(self):
        return self.write_yaml("good", [
            "driver: fixture",                                # 1
            "webhook_secret_file: %s" % self.secret_file,     # 2
            "accounts:",                                      # 3
            "  - id: good",                                   # 4
            "    mailbox: %s" % self.d.path("data", "good.log"),  # 5
            "    generate: 3",                                # 6
            "    folders_available: [INBOX, Sent]",           # 7
        ])

    def test_valid_config(self):
        self.valid_instance()
        r = self.check()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.error_lines(r), [], "no errors printed")

    def test_yaml_unknown_key(self):
        self.valid_instance()
        path = self.write_yaml("bad", [
            "driver: fixture",
            "accounts:",
            "  - id: bad",
            "    mailbox: /tmp/nowhere.log",
            "    colour: blue",                                # 5
        ])
        self.assert_error_at(self.check(), path, 5, "colour")

    def test_yaml_unknown_instance_key(self):
        path = self.write_yaml("bad", [
            "driver: fixture",
            "poll_interval: 60",
            "flavour: vanilla",                                # 3
            "accounts:",
            "  - id: bad",
            "    mailbox: /tmp/nowhere.log",
        ])
        self.assert_error_at(self.check(), path, 3, "flavour")

    def test_yaml_wrong_type(self):
        path = self.write_yaml("bad", [
            "driver: fixture",
            "accounts:",
            "  - id: bad",
            "    mailbox: /tmp/nowhere.log",
            "    generate: lots",                              # 5
            "    batch_delay_ms: [1, 2]",                      # 6
        ])
        r = self.check()
        self.assert_error_at(r, path, 5, "generate")
        self.assert_error_at(r, path, 6, "batch_delay_ms")

    def test_yaml_core_key_wrong_type(self):
        path = self.write_yaml("bad", [
            "driver: fixture",
            "accounts:",
            "  - id: bad",
            "    mailbox: /tmp/nowhere.log",
            "    poll_interval: often",                        # 5
        ])
        self.assert_error_at(self.check(), path, 5, "poll_interval")

    def test_yaml_missing_required(self):
        path = self.write_yaml("bad", [
            "driver: fixture",
            "accounts:",
            "  - id: first",
            "    mailbox: /tmp/first.log",
            "  - id: second",                                  # 5: no mailbox
            "    generate: 4",
        ])
        self.assert_error_at(self.check(), path, 5, "mailbox")

    def test_yaml_secret_never_printed(self):
        # A secret pasted into a plain key (instead of a *_file key) is an
        # unknown key: the error names the key, never the value.
        path = self.write_yaml("bad", [
            "driver: fixture",
            "webhook_secret: %s" % SECRET,                     # 2
            "accounts:",
            "  - id: bad",
            "    mailbox: /tmp/nowhere.log",
            "    password: %s" % SECRET,                       # 6
        ])
        r = self.check()
        self.assert_error_at(r, path, 2, "webhook_secret")
        self.assert_error_at(r, path, 6, "password")

    def test_yaml_syntax_error(self):
        path = self.write_yaml("bad", [
            "driver: fixture",
            "accounts:",
            "  - id: bad",
            "    mailbox: [unclosed",                          # 4
            "",
        ])
        r = self.check()
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertTrue(any(l.startswith(path + ":") for l in self.error_lines(r)), r.stderr)

    def write_conf(self, lines):
        with open(self.d.conf_path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return self.d.conf_path

    def conf_head(self):
        return [
            'state_dir = "%s";' % self.d.state_dir,          # 1
            'driver_dir = "%s";' % self.d.driver_dir,        # 2
            'plugins_dir = "%s";' % self.d.plugins_dir,      # 3
        ]

    def test_conf_unknown_key(self):
        self.valid_instance()
        path = self.write_conf(self.conf_head() + [
            "workers = 2;",                                   # 4
            "wrokers = 3;",                                   # 5
        ])
        self.assert_error_at(self.check(), path, 5, "wrokers")

    def test_conf_unknown_nested_key(self):
        self.valid_instance()
        path = self.write_conf(self.conf_head() + [
            "http = {",                                       # 4
            '  listen = "127.0.0.1:0";',                      # 5
            "  max_bodyy = 10;",                              # 6
            "};",
        ])
        self.assert_error_at(self.check(), path, 6, "max_bodyy")

    def test_conf_wrong_type(self):
        self.valid_instance()
        path = self.write_conf(self.conf_head() + [
            'workers = "four";',                              # 4
            "sync = {",                                       # 5
            "  fetch_bodies = 7;",                            # 6
            "};",
        ])
        r = self.check()
        self.assert_error_at(r, path, 4, "workers")
        self.assert_error_at(r, path, 6, "fetch_bodies")

    def test_conf_bad_value(self):
        self.valid_instance()
        path = self.write_conf(self.conf_head() + [
            "backfill = {",                                   # 4
            '  mode = "sometimes";',                          # 5
            "};",
        ])
        self.assert_error_at(self.check(), path, 5, "mode")

    def test_conf_missing_plugins_dir(self):
        # mailpulsed.conf has a default for every key, so nothing can be
        # missing; what it requires is the directories it names.
        self.valid_instance()
        self.write_conf([
            'state_dir = "%s";' % self.d.state_dir,
            'driver_dir = "%s";' % self.d.driver_dir,
            'plugins_dir = "%s";' % self.d.path("no-such-dir"),
        ])
        r = self.check()
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("no-such-dir", r.stderr)

    def test_conf_syntax_error(self):
        self.valid_instance()
        path = self.write_conf(self.conf_head() + [
            "workers = 2;",                                   # 4
            "log_level = = \"info\";",                        # 5
        ])
        r = self.check()
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertTrue(any(l.startswith(path + ":5:") for l in self.error_lines(r)),
                        r.stderr)

    def test_all_errors_reported(self):
        self.valid_instance()
        a = self.write_yaml("bad_a", [
            "driver: fixture",
            "accounts:",
            "  - id: a",
            "    mailbox: /tmp/a.log",
            "    colour: blue",                                 # 5
        ])
        b = self.write_yaml("bad_b", [
            "driver: fixture",
            "accounts:",
            "  - id: b",
            "    mailbox: /tmp/b.log",
            "    generate: many",                               # 5
        ])
        r = self.check()
        self.assert_error_at(r, a, 5, "colour")
        self.assert_error_at(r, b, 5, "generate")


if __name__ == "__main__":
    mptest.main()
