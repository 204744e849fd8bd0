#!/usr/bin/env python3
"""One source of truth, checked: every setting mailpulsed knows and every key
a built driver declares must be documented in the man pages, the README and
the example configuration.

The source is the real binary: `mailpulsed --print-keys` prints the tables
the validation itself uses (core/config/settings.c, webhooks.c, plugins.c)
and the mp_config_key tables of every driver in the build's driver
directory, loaded through the real loader. The documents checked:

  mailpulsed.conf(5)       every setting, on a line "*name* = default ..."
                           (or "*name* (...)" without a default); and no
                           entry the daemon does not know
  mailpulse-plugins.d(5)   the keys of every instance and account under
                           "## Keys of every instance|account"; each
                           driver's under "## <driver>: instance|account
                           keys", with the default on the key's line
  README.md                a table row per setting (webhooks: in "Outbound
                           webhooks"), no row for an unknown setting; the
                           core plugins.d keys in the Configuration YAML;
                           a table row per key in the driver's section
                           ("## ... (`<driver>.so`)")
  config/mailpulsed.conf   every setting as "name = default;" (commented
                           out where optional) in its group
  config/plugins.d/        README with the core keys, and
                           <driver>.yaml.example with every driver key; the
                           example, enabled and with its commented keys on,
                           passes `mailpulsed --check-config`

The man pages are checked in their configured form (build tree), where the
install paths are the ones this build compiles in.

Environment (set by ctest): MAILPULSED, MP_BUILD_DRIVER_DIR, MP_SOURCE_DIR,
MP_MAN_DIR (the configured .scd files).
"""

import json
import os
import re
import subprocess
import sys
import tempfile


def env(name):
    value = os.environ.get(name)
    if not value:
        sys.exit("check_docs: %s is not set (run through ctest)" % name)
    return value


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def print_keys(binary, driver_dir):
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
        f.write('driver_dir = "%s";\n' % driver_dir)
        conf = f.name
    try:
        out = subprocess.run([binary, "-c", conf, "--print-keys"], check=True,
                             capture_output=True, text=True, timeout=60).stdout
    finally:
        os.unlink(conf)
    return json.loads(out)


def sections(text, level):
    """{heading: body} of the markdown/scdoc headings of exactly `level` #."""
    out, name, body = {}, None, []
    mark = "#" * level + " "
    in_fence = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_fence = not in_fence
        if not in_fence and line.startswith("#") and (
                line.startswith(mark) or len(line) - len(line.lstrip("#")) < level):
            if name is not None:
                out[name] = "\n".join(body)
            name = line[len(mark):].strip() if line.startswith(mark) else None
            body = []
        elif name is not None:
            body.append(line)
    if name is not None:
        out[name] = "\n".join(body)
    return out


def find_section(secs, pred, what, problems):
    hits = [body for name, body in secs.items() if pred(name)]
    if not hits:
        problems.append("no section for %s" % what)
        return ""
    return hits[0]


def scd_entry(body, name):
    """The scdoc entry line "*name* ..." or None."""
    m = re.search(r"^\*%s\*( .*)?$" % re.escape(name), body, re.M)
    return m.group(0) if m else None


def table_first_cells(body):
    cells = []
    for line in body.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            parts = line.split("|")
            if len(parts) > 2:
                cells.append(parts[1])
    return cells


def row_mentions(body, key):
    return any("`%s`" % key in cell for cell in table_first_cells(body))


def libconfig_paths(text):
    """{(group path, key): [value text, ...]} of `key = value;` lines of a
    libconfig file, commented out or not ("# key = value;")."""
    found = {}
    stack = []
    for raw in text.splitlines():
        line = raw.strip()
        while line.startswith("#"):
            line = line[1:].strip()
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*([{(])\s*(.*)$", line)
        if m:
            stack.append(m.group(1))
            continue
        if re.match(r"^[{(]\s*$", line):
            stack.append("")
            continue
        if re.match(r"^[})]\s*[;,]?\s*$", line):
            if stack:
                stack.pop()
            continue
        # A value is a libconfig literal: prose such as "tls = false only
        # for a proxy ...;" in a comment is not a setting.
        m = re.match(r'^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*("[^"]*"|-?[0-9]+|true|false|'
                     r'\[[^\]]*\])\s*;', line)
        if m:
            group = ".".join(p for p in stack if p)
            found.setdefault((group, m.group(1)), []).append(m.group(2).strip())
    return found


def conf_value(setting):
    d = setting["default"]
    if setting["type"] == "string":
        return '"%s"' % d
    return d


def yaml_keys(text, min_indent=0, max_indent=99):
    keys = set()
    for raw in text.splitlines():
        m = re.match(r"^(\s*)(?:#\s*)?(?:- )?([A-Za-z_][A-Za-z0-9_]*):(\s|$)", raw)
        if m:
            indent = len(m.group(1)) + (2 if raw.strip().startswith("- ") else 0)
            if min_indent <= indent <= max_indent:
                keys.add(m.group(2))
    return keys


def example_checks(binary, driver_dir, path):
    """`mailpulsed --check-config` on the example instance file, enabled and
    with its commented-out keys switched on: its keys and value types must
    be the ones the driver declares. Returns the errors printed, or ""."""
    with open(path) as f:
        text = f.read()
    text = re.sub(r"^enabled: false", "enabled: true", text, flags=re.M)
    text = re.sub(r"^(\s*)# ([a-z_]+: )", r"\1\2", text, flags=re.M)
    with tempfile.TemporaryDirectory(prefix="mp-docs-") as tmp:
        plugins = os.path.join(tmp, "plugins.d")
        os.makedirs(plugins)
        with open(os.path.join(plugins, "example.yaml"), "w") as f:
            f.write(text)
        conf = os.path.join(tmp, "mailpulsed.conf")
        with open(conf, "w") as f:
            f.write('driver_dir = "%s";\nplugins_dir = "%s";\nstate_dir = "%s";\n'
                    % (driver_dir, plugins, os.path.join(tmp, "state")))
        r = subprocess.run([binary, "-c", conf, "--check-config"], capture_output=True,
                           text=True, timeout=60)
    return "" if r.returncode == 0 else (r.stderr.strip() or "exit status %d" % r.returncode)


def fenced(body):
    return "\n".join(re.findall(r"```[a-z]*\n(.*?)```", body, re.S))


def main():
    binary = env("MAILPULSED")
    driver_dir = env("MP_BUILD_DRIVER_DIR")
    src = env("MP_SOURCE_DIR")
    man_dir = env("MP_MAN_DIR")
    keys = print_keys(binary, driver_dir)
    problems = []

    if keys["refused"]:
        problems.append("built drivers the loader refuses: %r" % keys["refused"])
    if not keys["drivers"]:
        problems.append("no driver found in %s" % driver_dir)

    conf_man = read(os.path.join(man_dir, "mailpulsed.conf.5.scd"))
    plugins_man = read(os.path.join(man_dir, "mailpulse-plugins.d.5.scd"))
    readme = read(os.path.join(src, "README.md"))
    example = read(os.path.join(src, "config", "mailpulsed.conf"))
    plugins_readme = read(os.path.join(src, "config", "plugins.d", "README"))
    readme_h2 = sections(readme, 2)
    readme_h3 = sections(readme, 3)
    config_sec = find_section(readme_h2, lambda n: n == "Configuration",
                              "README \"## Configuration\"", problems)
    webhooks_sec = find_section(readme_h3, lambda n: n == "Outbound webhooks",
                                "README \"### Outbound webhooks\"", problems)
    example_paths = libconfig_paths(example)

    # ---- settings ----
    known = {s["name"] for s in keys["settings"]}
    for s in keys["settings"]:
        name, key, group = s["name"], s["key"], s["group"] or ""
        line = scd_entry(conf_man, name)
        if line is None:
            problems.append("mailpulsed.conf(5): setting %s is missing" % name)
        elif s["default"] is not None and s["default"] not in line:
            problems.append("mailpulsed.conf(5): %s: default %r not on its line %r"
                            % (name, s["default"], line))
        if group == "webhooks":
            if not row_mentions(webhooks_sec, key):
                problems.append("README Outbound webhooks: no table row for `%s`" % key)
        elif not row_mentions(config_sec, name):
            problems.append("README Configuration: no table row for `%s`" % name)
        values = example_paths.get((group, key))
        if not values:
            problems.append("config/mailpulsed.conf: %s is missing" % name)
        elif (s["default"] is not None and not s["default"].startswith("/")
              and conf_value(s) not in values):
            problems.append("config/mailpulsed.conf: %s = %s, but the default is %s"
                            % (name, values[0], conf_value(s)))
    for m in re.finditer(r"^\*([a-z_][a-z0-9_.]*)\* [=(]", conf_man, re.M):
        if m.group(1) not in known:
            problems.append("mailpulsed.conf(5) documents %s, which the daemon does not know"
                            % m.group(1))
    for cell in table_first_cells(config_sec):
        m = re.fullmatch(r"\s*`([a-z_][a-z0-9_.]*)`\s*", cell)
        if m and m.group(1) not in known:
            problems.append("README Configuration table lists `%s`, which the daemon "
                            "does not know" % m.group(1))

    # ---- keys every plugins.d file has ----
    man_h2 = sections(plugins_man, 2)
    readme_yaml = fenced(config_sec)
    for level, heading, lo, hi in (("instance", "Keys of every instance", 0, 0),
                                   ("account", "Keys of every account", 4, 99)):
        body = find_section(man_h2, lambda n, h=heading: n == h,
                            "mailpulse-plugins.d(5) \"## %s\"" % heading, problems)
        for key in keys["plugins"][level]:
            if scd_entry(body, key) is None:
                problems.append("mailpulse-plugins.d(5): %s key %s is missing" % (level, key))
            if key not in yaml_keys(readme_yaml, lo, hi):
                problems.append("README Configuration YAML: %s key %s is missing"
                                % (level, key))
            if key not in yaml_keys(plugins_readme, lo + 2, hi + 2):
                problems.append("config/plugins.d/README: %s key %s is missing"
                                % (level, key))

    # ---- each built driver's keys ----
    for drv in keys["drivers"]:
        d = drv["name"]
        readme_sec = find_section(readme_h2, lambda n: "(`%s.so`)" % d in n,
                                  "driver %s in README (\"## ... (`%s.so`)\")" % (d, d),
                                  problems)
        ex_path = os.path.join(src, "config", "plugins.d", d + ".yaml.example")
        ex_keys = yaml_keys(read(ex_path)) if os.path.exists(ex_path) else None
        if ex_keys is None:
            problems.append("config/plugins.d/%s.yaml.example is missing" % d)
        else:
            errors = example_checks(binary, driver_dir, ex_path)
            if errors:
                problems.append("config/plugins.d/%s.yaml.example fails --check-config: %s"
                                % (d, errors))
        for level in ("instance", "account"):
            body = find_section(man_h2, lambda n, h="%s: %s keys" % (d, level): n == h,
                                "mailpulse-plugins.d(5) \"## %s: %s keys\"" % (d, level),
                                problems)
            for k in drv[level + "_keys"]:
                line = scd_entry(body, k["name"])
                if line is None:
                    problems.append("mailpulse-plugins.d(5): %s %s key %s is missing"
                                    % (d, level, k["name"]))
                elif k["default"] is not None and k["default"] not in line:
                    problems.append("mailpulse-plugins.d(5): %s key %s: default %r not on "
                                    "its line %r" % (d, k["name"], k["default"], line))
                if not row_mentions(readme_sec, k["name"]):
                    problems.append("README %s section: no table row for `%s`"
                                    % (d, k["name"]))
                if ex_keys is not None and k["name"] not in ex_keys:
                    problems.append("config/plugins.d/%s.yaml.example: key %s is missing"
                                    % (d, k["name"]))

    checked = (len(keys["settings"]) + sum(len(v) for v in keys["plugins"].values()) +
               sum(len(d["instance_keys"]) + len(d["account_keys"]) for d in keys["drivers"]))
    if problems:
        print("documentation out of step with `mailpulsed --print-keys` (%d problems):"
              % len(problems))
        for p in problems:
            print("  " + p)
        return 1
    print("documentation covers all %d settings and keys (drivers: %s)"
          % (checked, ", ".join(d["name"] for d in keys["drivers"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
