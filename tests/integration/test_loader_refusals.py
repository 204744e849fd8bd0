"""Deliberately wrong drivers are refused with a message naming the file
(and both ABI versions); the daemon keeps serving the good driver."""

import os
import re
import shutil
import tempfile
import unittest

import mptest

REFUSED = ["abi_major", "abi_minor", "short_struct", "missing_slot", "wrong_name",
           "no_symbol"]


def host_abi():
    """The host's ABI "major.minor", read from the SDK header it was built with."""
    header = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "sdk",
                          "include", "mailpulse", "driver.h")
    with open(header) as f:
        text = f.read()
    major = re.search(r"#define MP_ABI_MAJOR (\d+)", text).group(1)
    minor = re.search(r"#define MP_ABI_MINOR (\d+)", text).group(1)
    return "%s.%s" % (major, minor)


HOST_ABI = host_abi()


def refused_dir():
    path = mptest.env("MP_REFUSED_DRIVER_DIR")
    if not os.path.isdir(path):
        raise AssertionError("MP_REFUSED_DRIVER_DIR %s does not exist: the refused "
                             "test drivers were not built" % path)
    return path


def make_driver_dir(files, mode=0o644):
    """A private 0755 directory with copies of `files` (0644)."""
    d = tempfile.mkdtemp(prefix="mpdrivers-")
    os.chmod(d, 0o755)
    for src in files:
        dst = os.path.join(d, os.path.basename(src))
        shutil.copyfile(src, dst)
        os.chmod(dst, mode)
    return d


class LoaderRefusals(unittest.TestCase):
    def tearDown(self):
        for d in getattr(self, "_dirs", []):
            shutil.rmtree(d, ignore_errors=True)

    def driver_dir(self, files, mode=0o644):
        d = make_driver_dir(files, mode)
        self._dirs = getattr(self, "_dirs", []) + [d]
        return d

    def test_refused_drivers(self):
        src = refused_dir()
        files = [os.path.join(src, n + ".so") for n in REFUSED]
        for f in files:
            self.assertTrue(os.path.exists(f), "missing refused driver %s" % f)
        files.append(os.path.join(mptest.env("MP_TEST_DRIVER_DIR"), "fixture.so"))
        ddir = self.driver_dir(files)

        d = mptest.Daemon(name="refusals", driver_dir=ddir)
        for name in REFUSED:
            d.write_instance("inst_" + name, "driver: %s\naccounts:\n  - id: acct-%s\n"
                             % (name, name.replace("_", "-")))
        d.add_instance("good", [{"id": "good", "generate": 12}])
        d.start()

        d.wait_bootstrapped("good", ["INBOX", "Archive"])
        # The status is recorded when the sync job ends, a moment after its
        # last commit made the folders bootstrapped.
        mptest.wait_until(lambda: d.account("good")["status"] == "ok", 30,
                          message="good account status ok")
        mptest.wait_until(lambda: len(d.all_messages("good")) == 12, 60,
                          message="good account to sync its 12 messages")

        accounts = d.accounts()
        for name in REFUSED:
            a = accounts.get("acct-" + name.replace("_", "-"))
            self.assertIsNotNone(a, "account of %s listed" % name)
            self.assertEqual(a["status"], "driver-refused", a)
            err = a["last_error"] or ""
            self.assertIn(name + ".so", err, "last_error names the file: %r" % err)
            if name in ("abi_major", "abi_minor"):
                versions = set(re.findall(r"\b\d+\.\d+\b", err))
                self.assertIn(HOST_ABI, versions, "host ABI named: %r" % err)
                self.assertTrue(versions - {HOST_ABI}, "driver ABI named: %r" % err)

        status = d.get("/v1/status")
        by_instance = {drv["instance"]: drv for drv in status["drivers"]}
        for name in REFUSED:
            drv = by_instance["inst_" + name]
            self.assertEqual(drv["status"], "refused", drv)
            self.assertIn(name + ".so", drv["error"] or "")
        self.assertEqual(by_instance["good"]["status"], "loaded")
        self.assertIsNone(by_instance["good"]["error"])

        # still serving after all that
        self.assertEqual(d.get("/healthz", auth=False)["status"], "ok")
        self.assertTrue(d.running())
        self.assertEqual(d.stop(), 0)

    def test_group_writable_driver_refused(self):
        fixture = os.path.join(mptest.env("MP_TEST_DRIVER_DIR"), "fixture.so")
        ddir = self.driver_dir([fixture], mode=0o664)
        d = mptest.Daemon(name="writable", driver_dir=ddir)
        d.add_instance("fix", [{"id": "w1", "generate": 3}])
        d.start()
        a = mptest.wait_until(lambda: d.accounts().get("w1"), 30, message="account listed")
        self.assertEqual(a["status"], "driver-refused", a)
        self.assertIn("fixture.so", a["last_error"] or "")
        folders = d.account("w1")["folders"]
        self.assertEqual(sum(f["messages"] for f in folders), 0, folders)
        self.assertEqual(d.get("/healthz", auth=False)["status"], "ok")

    def test_writable_directory_refused(self):
        fixture = os.path.join(mptest.env("MP_TEST_DRIVER_DIR"), "fixture.so")
        ddir = self.driver_dir([fixture])
        os.chmod(ddir, 0o777)
        d = mptest.Daemon(name="writabledir", driver_dir=ddir)
        d.add_instance("fix", [{"id": "w2", "generate": 3}])
        d.start()
        a = mptest.wait_until(lambda: d.accounts().get("w2"), 30, message="account listed")
        self.assertEqual(a["status"], "driver-refused", a)
        self.assertTrue(a["last_error"], a)


if __name__ == "__main__":
    mptest.main()
