#!/usr/bin/env python3
"""Announce one torrent to one tracker with libtorrent and print the answer.

Used by TestLibtorrentPrivateUDP (e2e_libtorrent_test.go):

    libtorrent_announce.py TRACKER_URL INFO_HASH_HEX SAVE_DIR [TIMEOUT_S]

The torrent is added by info hash alone (no metadata), with DHT, local peer
discovery, UPnP and NAT-PMP off, so the tracker is the only source of peers.
The first tracker answer is printed as one line of JSON and the script exits 0:

    {"alert": "tracker_reply", "num_peers": 1, "version": "2.0.8.0"}
    {"alert": "tracker_error", "failure_reason": "...", "error": "...", "version": "..."}

failure_reason is the tracker's text as libtorrent shows it, error libtorrent's
own error message ("tracker sent a failure message" for a refusal).

No answer within TIMEOUT_S (default 20) prints {"alert": "timeout"} and exits 1.
"""

import json
import sys
import time

import libtorrent as lt


def main():
    url, ih, save = sys.argv[1], sys.argv[2], sys.argv[3]
    timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 20.0
    ses = lt.session({
        "listen_interfaces": "127.0.0.1:0",
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "alert_mask": lt.alert.category_t.all_categories,
    })
    atp = lt.add_torrent_params()
    atp.info_hashes = lt.info_hash_t(lt.sha1_hash(bytes.fromhex(ih)))
    atp.save_path = save
    atp.trackers = [url]
    # Started at once, not left to the queue.
    atp.flags &= ~(lt.torrent_flags.paused | lt.torrent_flags.auto_managed)
    ses.add_torrent(atp)
    out = {"alert": "timeout"}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and out["alert"] == "timeout":
        ses.wait_for_alert(200)
        for a in ses.pop_alerts():
            if isinstance(a, lt.tracker_reply_alert):
                out = {"alert": "tracker_reply", "num_peers": a.num_peers}
                break
            if isinstance(a, lt.tracker_error_alert):
                out = {"alert": "tracker_error", "failure_reason": a.failure_reason(), "error": a.error.message()}
                break
    out["version"] = lt.__version__
    print(json.dumps(out), flush=True)
    return 0 if out["alert"] != "timeout" else 1


if __name__ == "__main__":
    sys.exit(main())
