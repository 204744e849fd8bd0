#!/usr/bin/env python3
"""The installed systemd unit, checked with systemd's own tools.

Stages `cmake --install` of the build tree into a temporary DESTDIR, then:

  systemd-analyze security --offline=true <unit>
      the overall exposure must be "OK" or better (< 5.0) and no worse
      than MAX_EXPOSURE, the score the unit had when it was last reviewed
      (raise the hardening, never this number); every setting it still
      flags must be named in a comment of the unit (the justification);
  systemd-analyze verify <unit>
      must pass (exit 0). The unit names absolute install paths, so verify
      runs on a copy whose paths point into the staged tree, with MANPATH
      at the staged man pages so Documentation=man:... is checked too
      (without scdoc the pages are not built: then --man=no, said so).

Skipped (exit 77, with the reason) where systemd-analyze does not exist.
Usage: check_unit.py BUILD_DIR INSTALL_PREFIX MAN_BUILT(0|1)
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

MAX_EXPOSURE = 1.2
OK_LABELS = ("OK", "SAFE", "PERFECT")


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)
    return r.returncode, r.stdout + r.stderr


def main():
    build, prefix, man_built = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        print("SKIP: systemd-analyze not found (Debian: apt-get install systemd); "
              "the unit was not checked")
        return 77
    failures = []
    with tempfile.TemporaryDirectory(prefix="mp-unit-") as tmp:
        stage = os.path.join(tmp, "stage")
        rc, out = run(["cmake", "--install", build], env=dict(os.environ, DESTDIR=stage))
        if rc != 0:
            print("cmake --install failed:\n" + out)
            return 1
        staged_prefix = stage + prefix
        unit = os.path.join(staged_prefix, "lib", "systemd", "system", "mailpulsed.service")
        with open(unit) as f:
            text = f.read()

        # ---- security ----
        rc, out = run([analyze, "security", "--offline=true", unit])
        print("$ systemd-analyze security --offline=true mailpulsed.service")
        print("\n".join(l for l in out.splitlines() if "✗" in l or "Overall" in l))
        m = re.search(r"Overall exposure level for mailpulsed\.service: ([0-9.]+) (\w+)", out)
        if rc != 0 or m is None:
            failures.append("systemd-analyze security failed (status %d)" % rc)
        else:
            score, label = float(m.group(1)), m.group(2)
            if label not in OK_LABELS:
                failures.append("exposure %.1f %s: must be OK or better" % (score, label))
            if score > MAX_EXPOSURE:
                failures.append("exposure %.1f is worse than the reviewed %.1f"
                                % (score, MAX_EXPOSURE))
        comments = "\n".join(l for l in text.splitlines() if l.lstrip().startswith("#"))
        for line in out.splitlines():
            if "✗" not in line:
                continue
            setting = line.split("✗", 1)[1].split()[0].split("=")[0] + "="
            if setting not in comments:
                failures.append("%s is still exposed and no comment in the unit says why"
                                % setting)

        # ---- verify ----
        vdir = os.path.join(tmp, "verify")
        os.makedirs(vdir)
        with open(os.path.join(vdir, "mailpulsed.service"), "w") as f:
            f.write(re.sub(r"(?<=[= ])%s/" % re.escape(prefix), staged_prefix + "/", text))
        cmd = [analyze, "verify"]
        venv = dict(os.environ)
        if man_built:
            venv["MANPATH"] = os.path.join(staged_prefix, "share", "man")
        else:
            print("man pages not built (MP_MAN=OFF or no scdoc): verify runs with --man=no")
            cmd.append("--man=no")
        cmd.append(os.path.join(vdir, "mailpulsed.service"))
        rc, out = run(cmd, env=venv)
        print("$ systemd-analyze verify mailpulsed.service  (exit %d)" % rc)
        if out.strip():
            print(out.rstrip())
        if rc != 0:
            failures.append("systemd-analyze verify failed (status %d)" % rc)

    for f in failures:
        print("FAIL: " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
