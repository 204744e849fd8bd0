#!/usr/bin/env python3
"""emailengine.so as a third party builds it: install only the "sdk"
component of this build into a private prefix, build plugins/emailengine
against it the CMake way (find_package(MailpulseDriver) through
CMAKE_PREFIX_PATH) and the pkg-config way, check that neither build saw the
source tree's headers and that each .so exports exactly one symbol, then
put each into a private driver directory (0755, owner-only as the loader
demands) and load it into the already built daemon: `--print-keys` lists
the driver with its keys under the host's ABI, and a short daemon run
against the fake EmailEngine syncs an account through it.

Environment (set by tests/sdk/CMakeLists.txt): CMAKE, CC, NM, PKG_CONFIG,
MP_BUILD_DIR, MP_SOURCE_DIR, MP_WORK_DIR, MAILPULSED, MP_ABI_MAJOR,
MP_ABI_MINOR.
"""

import glob
import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
import unittest

SRC = os.environ.get("MP_SOURCE_DIR", "")
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))
import mptest  # noqa: E402
import fake_emailengine  # noqa: E402


def env(name):
    return mptest.env(name)


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    if r.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s\n%s" % (" ".join(cmd), r.returncode,
                                                          r.stdout[-4000:], r.stderr[-4000:]))
    return r.stdout


class OutOfTreeEmailEngine(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = work = env("MP_WORK_DIR")
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)
        cls.prefix = os.path.join(work, "prefix")
        cls.driver_src = os.path.join(env("MP_SOURCE_DIR"), "plugins", "emailengine")
        run([env("CMAKE"), "--install", env("MP_BUILD_DIR"), "--prefix", cls.prefix,
             "--component", "sdk"])
        cls.abi = "%s.%s" % (env("MP_ABI_MAJOR"), env("MP_ABI_MINOR"))

    def private_dir(self, so):
        """A 0755 directory holding a 0755 copy of `so`, as the loader wants
        (no group/other write on the file nor the directory)."""
        d = os.path.join(self.work, "drivers-" + os.path.basename(os.path.dirname(so)))
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        os.chmod(d, 0o755)
        dst = os.path.join(d, "emailengine.so")
        shutil.copyfile(so, dst)
        os.chmod(dst, 0o755)
        mode = os.stat(dst).st_mode
        self.assertFalse(mode & (stat.S_IWGRP | stat.S_IWOTH))
        return d

    def check_exports(self, so):
        run(["sh", os.path.join(env("MP_SOURCE_DIR"), "tests", "sdk", "check_exports.sh"), so],
            env=dict(os.environ, NM=env("NM")))

    def check_loads(self, driver_dir):
        conf = os.path.join(self.work, "print-keys.conf")
        with open(conf, "w") as f:
            f.write('driver_dir = "%s";\n' % driver_dir)
        keys = json.loads(run([env("MAILPULSED"), "-c", conf, "--print-keys"]))
        self.assertEqual(keys["refused"], [])
        self.assertEqual(keys["abi"], self.abi)
        drv = {d["name"]: d for d in keys["drivers"]}["emailengine"]
        self.assertEqual([k["name"] for k in drv["instance_keys"]],
                         ["url", "token_file", "service_secret_file"])
        self.assertEqual([k["name"] for k in drv["account_keys"]], ["ee_account"])

    def check_syncs(self, driver_dir, name):
        """The already built daemon loads the out-of-tree driver and syncs
        an account of the fake EmailEngine through it."""
        fake = fake_emailengine.FakeEmailEngine(service_secret="oot-secret").start()
        d = mptest.Daemon(name="oot_ee_" + name, driver_dir=driver_dir)
        try:
            fake.add_account("acc", state="connected")
            fake.add_mailbox("acc", "INBOX", special_use="\\Inbox")
            fake.add_message("acc", "INBOX", b"Subject: oot\r\nMessage-ID: <oot@x>\r\n"
                             b"\r\nbuilt out of tree\r\n")
            token = d.write_secret("ee.token", fake.token.encode())
            secret = d.write_secret("ee.secret", b"oot-secret")
            d.write_instance("ee", mptest.render_instance(
                "emailengine", [{"id": "a", "ee_account": "acc"}], url=fake.url,
                token_file=token, service_secret_file=secret))
            d.start()
            d.wait_bootstrapped("a", ["INBOX"])
            status = d.get("/v1/status")
            drv = {x["instance"]: x for x in status["drivers"]}["ee"]
            self.assertEqual(drv["status"], "loaded", drv)
            self.assertIn("driver emailengine loaded from %s/emailengine.so (ABI %s)"
                          % (driver_dir, self.abi), d.log_text())
            mptest.wait_until(lambda: len(d.all_messages("a")) == 1, 30,
                              message="the message synced")
        finally:
            d.stop()
            d.cleanup()
            fake.stop()

    def test_cmake_find_package(self):
        build = os.path.join(self.work, "cmake-build")
        run([env("CMAKE"), "-S", self.driver_src, "-B", build,
             "-DCMAKE_PREFIX_PATH=" + self.prefix, "-DCMAKE_C_COMPILER=" + env("CC"),
             "-DCMAKE_BUILD_TYPE=Release", "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON",
             "-DCMAKE_C_FLAGS=-Wall -Wextra -Werror"])
        run([env("CMAKE"), "--build", build])
        so = os.path.join(build, "emailengine.so")
        self.assertTrue(os.path.exists(so))
        # The SDK came from the prefix: no include path into the source
        # tree (core/ or sdk/include) reached the compiler.
        with open(os.path.join(build, "compile_commands.json")) as f:
            commands = json.load(f)
        self.assertTrue(commands)
        for c in commands:
            args = shlex.split(c["command"])
            incs = [a[2:] for a in args if a.startswith("-I")]
            incs += [args[i + 1] for i, a in enumerate(args[:-1]) if a == "-isystem"]
            for inc in incs:
                self.assertFalse(inc.startswith(os.path.join(env("MP_SOURCE_DIR"), "core")),
                                 c["command"])
                self.assertFalse(inc.startswith(os.path.join(env("MP_SOURCE_DIR"), "sdk")),
                                 c["command"])
            self.assertIn(os.path.join(self.prefix, "include"), incs)
        self.check_exports(so)
        d = self.private_dir(so)
        self.check_loads(d)
        self.check_syncs(d, "cmake")

    def test_pkg_config(self):
        pc = glob.glob(os.path.join(self.prefix, "**", "mailpulse-driver.pc"), recursive=True)
        self.assertEqual(len(pc), 1)
        pkg_env = dict(os.environ, PKG_CONFIG_PATH=os.path.dirname(pc[0]))
        cflags = run([env("PKG_CONFIG"), "--cflags", "mailpulse-driver", "jansson",
                      "libcrypto"], env=pkg_env).split()
        libs = run([env("PKG_CONFIG"), "--libs", "jansson", "libcrypto"], env=pkg_env).split()
        self.assertIn("-I" + os.path.join(self.prefix, "include"),
                      [os.path.normpath(c) if c.startswith("-I") else c for c in cflags])
        build = os.path.join(self.work, "pc-build")
        os.makedirs(build, exist_ok=True)
        so = os.path.join(build, "emailengine.so")
        sources = sorted(glob.glob(os.path.join(self.driver_src, "*.c")))
        run([env("CC")] + cflags + ["-I" + self.driver_src, "-D_GNU_SOURCE", "-std=c17",
                                    "-Wall", "-Wextra", "-Werror", "-fPIC",
                                    "-fvisibility=hidden", "-pthread", "-shared", "-Wl,-z,defs",
                                    "-o", so] + sources + libs)
        self.check_exports(so)
        d = self.private_dir(so)
        self.check_loads(d)
        self.check_syncs(d, "pkgconfig")


if __name__ == "__main__":
    mptest.main()
