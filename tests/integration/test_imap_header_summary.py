"""Summaries read from the raw header equal Dovecot's ENVELOPE.

With `sync.fetch_bodies = true` imap.so fetches BODY.PEEK[] without
ENVELOPE and reads subject, addresses, Message-ID and date from the header
it already holds (plugins/imap/client/header.c). Two daemons load the same
Dovecot folder of messages with awkward headers, one through ENVELOPE and
one through the header, and every summary must come out the same; the
second one must also hold every body, byte-equal to Dovecot's."""

import unittest

import dovecot
import mptest

ACCOUNT = "alice"

HEADERS = [
    # quoted display name with a comma; several recipients; a subject of
    # encoded-words folded across lines
    "From: \"Doe, John\" <john@example.org>\r\n"
    "To: alice@localhost, \"Bob B.\" <bob@example.org>\r\n"
    "Subject: =?UTF-8?Q?Caf=C3=A9?=\r\n =?UTF-8?B?IGF1IGxhaXQ=?= and more\r\n"
    "Message-ID: <a1@mailpulse.test>\r\n"
    "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n",
    # a name only as a comment; a group; a folded Message-ID
    "From: carol@example.org (Carol C)\r\n"
    "To: Friends: dave@example.org, erin@example.org;\r\n"
    "Subject: group and comment\r\n"
    "Message-ID:\r\n <a2@mailpulse.test>\r\n"
    "Date: Wed, 15 Nov 2023 08:00:00 +0100\r\n",
    # an empty group; a tab-folded subject; no Message-ID and no Date
    # (the date then comes from INTERNALDATE)
    "From: Ivan <ivan@example.org>\r\n"
    "To: undisclosed-recipients:;\r\n"
    "Subject: long subject\r\n\tcontinued here\r\n",
    # a repeated Subject (the last counts, as in Dovecot's ENVELOPE); an encoded display name; an
    # obsolete source route
    "From: =?ISO-8859-1?Q?J=F6rg?= <joerg@example.de>\r\n"
    "To: <@relay.example:frank@example.org>\r\n"
    "Subject: first\r\n"
    "Subject: second\r\n"
    "Message-ID: <a4@mailpulse.test>\r\n"
    "Date: Thu, 16 Nov 2023 12:00:00 -0500\r\n",
    # a bare angle-addr; a trailing comment after the address; header names
    # in odd case
    "FROM: <grace@example.org>\r\n"
    "to: Heidi <heidi@example.org> (work)\r\n"
    "subject:   padded subject   \r\n"
    "message-id: <a5@mailpulse.test>\r\n"
    "date: Fri, 17 Nov 2023 09:30:00 +0000\r\n",
    # no From, no To, no Subject at all
    "Message-ID: <a6@mailpulse.test>\r\n"
    "Date: Sat, 18 Nov 2023 09:30:00 +0000\r\n",
]

SUMMARY_KEYS = ("subject", "from", "to", "message_id", "date", "size")


def raw_message(i, head):
    return (head + "MIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\n"
            "Subject: not a header (the body of message %d)\r\n"
            "From: nobody@body.example\r\n" % i).encode("utf-8")


class HeaderSummary(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = dovecot.Dovecot(name="dovecot-headers")
        cls.raws = [raw_message(i, h) for i, h in enumerate(HEADERS)]
        for raw in cls.raws:
            cls.server.append("INBOX", raw)
        cls.daemons = {}

    @classmethod
    def tearDownClass(cls):
        for d in cls.daemons.values():
            d.stop()
        cls.server.stop()

    def load(self, bodies):
        d = mptest.Daemon(name="headers-%s" % ("body" if bodies else "envelope"),
                          driver_dir=dovecot.imap_driver_dir(),
                          settings={"sync": {"fetch_bodies": bodies}})
        self.daemons[bodies] = d
        acct = dovecot.imap_account(d, self.server, ACCOUNT, folders=["INBOX"])
        dovecot.add_imap_instance(d, "mail", [acct])
        d.start()
        n = len(self.raws)

        def loaded():
            f = d.folder(ACCOUNT, "INBOX")
            return f and f["messages"] == n and (not bodies or f.get("bodies") == n) and f
        mptest.wait_until(loaded, 60, message="INBOX loaded (bodies=%s)" % bodies)
        return d, {m["id"]: m for m in d.all_messages(ACCOUNT, folder="INBOX")}

    def test_header_summaries_equal_envelope(self):
        _, by_envelope = self.load(False)
        d, by_header = self.load(True)
        self.assertEqual(sorted(by_envelope), sorted(by_header))
        self.assertEqual(len(by_header), len(self.raws))
        for mid, env in by_envelope.items():
            hdr = by_header[mid]
            for key in SUMMARY_KEYS:
                self.assertEqual(hdr.get(key), env.get(key),
                                 "%s of %s (%r)" % (key, mid, env.get("subject")))
        # The ENVELOPE side is what the cases are about: spot-check it.
        subjects = sorted(m["subject"] or "" for m in by_envelope.values())
        self.assertIn("Caf\u00e9 au lait and more", subjects)
        self.assertIn("second", subjects)
        froms = {m["from"] for m in by_envelope.values()}
        self.assertIn("Doe, John <john@example.org>", froms)
        self.assertIn("J\u00f6rg <joerg@example.de>", froms)
        # Bodies came with the summaries, byte-equal to what Dovecot holds.
        raws = set(self.raws)
        for mid in by_header:
            status, _, data = d.request("GET", "/v1/messages/%s/raw" % mid)
            self.assertEqual(status, 200, mid)
            self.assertIn(data, raws, mid)


if __name__ == "__main__":
    unittest.main()
