#!/usr/bin/env python3
"""Proves the delivery log's SQL on a current ClickHouse (chdb-core, 26.x in-process).

    check_modern.py STATEMENTS.json

STATEMENTS.json is written by analytics' TestStatementsRunOnModernClickHouse:
{"migrations": [{"version", "name", "modern", "statements"}], "statements": {name: sql}}
holding the exact text the Go code sends ("{db}" for the database, "?" for
client-side bound parameters). This script applies every migration (the
modern variant: all of them), twice, then runs every statement with sample
data, duplicates included, and asserts the answers. Exit status 0 = all good.
"""
import json
import sys
import tempfile
from datetime import datetime, timedelta, timezone

import chdb
from chdb import session

DB = "zaits_check"


def quote(v):
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(v, tuple):  # clickhouse.GroupSet
        return "(" + ", ".join(quote(x) for x in v) + ")"
    if isinstance(v, list):  # a Go slice
        return "[" + ", ".join(quote(x) for x in v) + "]"
    raise TypeError(f"cannot bind {v!r}")


def bind(sql, *args):
    """Substitutes "?" in order, as clickhouse-go's client-side binding does."""
    parts = sql.split("?")
    if len(parts) - 1 != len(args):
        raise ValueError(f"{len(parts) - 1} placeholders, {len(args)} arguments in {sql}")
    out = parts[0]
    for a, p in zip(args, parts[1:]):
        out += quote(a) + p
    return out


class Check:
    def __init__(self, doc):
        self.sql = {k: v.replace("{db}", DB) for k, v in doc["statements"].items()}
        self.migrations = doc["migrations"]
        self.s = session.Session(tempfile.mkdtemp(prefix="chdb-"))
        self.failures = []

    def run(self, name_or_sql, *args):
        sql = self.sql.get(name_or_sql, name_or_sql)
        res = self.s.query(bind(sql, *args), "JSONCompact")
        text = res.bytes().decode() if hasattr(res, "bytes") else str(res)
        if not text.strip():
            return []
        return json.loads(text)["data"]

    def expect(self, what, got, want):
        if got != want:
            self.failures.append(f"{what}: got {got!r}, want {want!r}")
            print(f"FAIL {what}: got {got!r}, want {want!r}")
        else:
            print(f"ok   {what}")

    def migrate(self):
        self.run("create_database")
        self.run("create_migrations")
        applied = {int(r[0]) for r in self.run("applied_migrations")}
        for m in self.migrations:
            if m["version"] in applied:
                continue
            for stmt in m["statements"]:
                self.run(stmt.replace("{db}", DB))
            self.run(self.sql["record_migration"] + " VALUES (?, ?, now())", m["version"], m["name"])
        self.run("retention_ttl", 30)
        self.run("retention_ttl_index", 30)


def main():
    doc = json.load(open(sys.argv[1]))
    c = Check(doc)
    version = c.run("version")[0][0]
    print("ClickHouse", version, "(chdb", chdb.__version__ + ")")
    c.migrate()
    c.migrate()  # idempotent
    c.expect("applied migrations", sorted(int(r[0]) for r in c.run("applied_migrations")),
             sorted(m["version"] for m in c.migrations))
    c.expect("low-cardinality columns",
             c.run(f"SELECT name, type FROM system.columns WHERE database = '{DB}' AND table = 'attempts' AND name IN ('event_type', 'outcome', 'error_code') ORDER BY name"),
             [["error_code", "LowCardinality(String)"], ["event_type", "LowCardinality(String)"], ["outcome", "LowCardinality(String)"]])
    ttl = c.run(f"SELECT create_table_query FROM system.tables WHERE database = '{DB}' AND name = 'attempts'")[0][0]
    c.expect("retention ttl", "TTL accepted_at + toIntervalDay(30)" in ttl, True)

    now = datetime.now(timezone.utc).replace(microsecond=0)
    base = now - timedelta(hours=1)
    fmt = lambda t: t.strftime("%Y-%m-%d %H:%M:%S")
    rows = []

    def add(acc, ep, did, evt, typ, accepted, outcomes, latencies, shift=0, pos=(-1, -1), first=1, trigger="", test=0):
        for i, (o, lat) in enumerate(zip(outcomes, latencies)):
            n = i + first
            at = accepted + timedelta(minutes=i, seconds=shift)
            status = 200 if o == "success" else 500
            err = "" if o == "success" else "Internal server error"
            nxt = fmt(at + timedelta(minutes=1)) if o == "retrying" else "1970-01-01 00:00:00"
            rows.append((acc, ep, fmt(accepted), did, n, evt, typ, o, status, lat,
                         "" if o == "success" else "http_status", err, "body", test,
                         fmt(accepted), fmt(at), nxt, fmt(now), trigger, pos[0], pos[1]))

    r, f, ok = "retrying", "failed", "success"
    add("acc_a", "we_1", "d1", "evt1", "document.signed", base, [r, r, r, ok], [100, 200, 300, 400])
    add("acc_a", "we_1", "d2", "evt2", "face.verified", base + timedelta(minutes=1), [r, f], [1000, 2000], pos=(3, 1234))
    add("acc_a", "we_1", "d3", "evt3", "document.signed", base + timedelta(minutes=2), [r], [50])
    add("acc_a", "we_2", "d4", "evt4", "document.signed", base - timedelta(days=10), [f], [10])
    add("acc_b", "we_1", "d5", "evt5", "document.signed", base, [ok], [5])
    values = lambda rs: " VALUES " + ", ".join("(" + ", ".join(quote(v) for v in row) + ")" for row in rs)
    c.run(c.sql["insert_attempts"] + values(rows))
    # Duplicates: everything again, and a repeated attempt with a later start.
    c.run(c.sql["insert_attempts"] + values(rows))
    first = len(rows)
    add("acc_a", "we_1", "d3", "evt3", "document.signed", base + timedelta(minutes=2), [r], [50], shift=1)
    c.run(c.sql["insert_attempts"] + values(rows[first:]))
    c.expect("raw rows (copies included)", int(c.run(f"SELECT count() FROM {DB}.attempts")[0][0]), 2 * first + 1)

    def page(acc, ep, status="", typ="", limit=25, offset=0, since=0):
        if status == "retrying":
            page_ids = c.run("retrying_ids", acc, ep, typ, typ, offset, limit)
            total = int(c.run("retrying_total", acc, ep, typ, typ)[0][0])
        else:
            page_ids = c.run("delivery_ids", acc, ep, since, typ, typ, status, status, status, acc, ep, acc, ep, offset, limit)
            total = int(c.run("deliveries_total", acc, ep, typ, typ, status, status, status, acc, ep, acc, ep)[0][0])
        ids = [r[0] for r in page_ids]
        unix = lambda v: int(datetime.strptime(v, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc).timestamp())
        times = [unix(r[1]) for r in page_ids]
        got = c.run("delivery_rows", acc, ep, min(times), max(times), tuple(ids)) if ids else []
        if [row[0] for row in got] != ids:
            c.expect("rows in page order", [row[0] for row in got], ids)
        return ids, total, got

    ids, total, got = page("acc_a", "we_1")
    c.expect("deliveries newest first", (ids, total), (["d3", "d2", "d1"], 3))
    d1 = got[2]
    c.expect("d1 row", [d1[3], int(d1[4]), int(d1[5]), int(d1[6]), d1[7], d1[8], d1[9]],
             ["success", 4, 200, 400, "", fmt(base), fmt(base + timedelta(minutes=3))])
    c.expect("d3 row (repeated attempt counted once)", [got[0][3], int(got[0][4])], ["retrying", 1])
    c.expect("page 2 of 2", page("acc_a", "we_1", limit=2, offset=2)[:2], (["d1"], 3))
    c.expect("status filter", page("acc_a", "we_1", status="failed")[:2], (["d2"], 1))
    c.expect("retrying filter", page("acc_a", "we_1", status="retrying")[:2], (["d3"], 1))
    c.expect("event type filter", page("acc_a", "we_1", typ="document.signed")[:2], (["d3", "d1"], 2))
    c.expect("tenancy", page("acc_b", "we_1")[:2], (["d5"], 1))
    c.expect("recent window", page("acc_a", "we_2", since=int((now - timedelta(days=1)).timestamp()))[0], [])

    att = c.run("delivery_attempts", "acc_a", "we_1", "d1", "acc_a", "we_1", "d1")
    c.expect("detail attempts", [(int(a[0]), a[3], int(a[4])) for a in att],
             [(1, "retrying", 500), (2, "retrying", 500), (3, "retrying", 500), (4, "success", 200)])
    c.expect("detail next retry", att[0][11], fmt(base + timedelta(minutes=1)))
    c.expect("detail tenancy", c.run("delivery_attempts", "acc_b", "we_1", "d1", "acc_b", "we_1", "d1"), [])

    since = int((now - timedelta(days=1)).timestamp())
    c.expect("status counts (all, success, finished)", [int(x) for x in c.run("status_counts", "acc_a", "we_1", since)[0]], [3, 1, 2])
    lat = c.run("latency", "acc_a", "we_1", since)[0]
    c.expect("latency count and percentiles", [int(lat[0]), [float(x) for x in lat[1]]], [7, [300.0, 2000.0, 2000.0]])

    b0 = int(base.timestamp()) // 60
    c.expect("series counts per minute (bucket, all, success, failed)",
             [[int(x) for x in r] for r in c.run("series_counts", 60, "acc_a", "we_1", since)],
             [[b0, 1, 1, 0], [b0 + 1, 1, 0, 1], [b0 + 2, 1, 0, 0]])
    c.expect("series publish-to-receipt percentiles (3 min wait + 400 ms)",
             [[int(r[0]), [float(x) for x in r[1]]] for r in c.run("series_latency", 60, "acc_a", "we_1", since)],
             [[b0, [180400.0, 180400.0]]])
    c.expect("series tenancy", c.run("series_counts", 60, "acc_b", "we_2", since), [])

    week = int((now - timedelta(days=7)).timestamp())
    last = sorted((r[0], r[1]) for r in c.run("last_delivery", "acc_a", ("we_1", "we_2", "we_none")))
    c.expect("last delivery", last, [("we_1", fmt(base + timedelta(minutes=3))), ("we_2", fmt(base - timedelta(days=10)))])
    rates = sorted((r[0], int(r[1]), int(r[2])) for r in c.run("success_counts", "acc_a", ("we_1", "we_2"), week))
    c.expect("success counts in window", rates, [("we_1", 1, 2)])

    # Recovery: a delivery's origin, the failed page a recover job walks, the
    # attempts so far a replay numbers after.
    c.expect("delivery origin (event, type, accepted, partition, offset, attempts, test)",
             [[x if i not in (3, 4, 5, 6) else int(x) for i, x in enumerate(r)] for r in c.run("delivery_origin", "acc_a", "we_1", "d2", "acc_a", "we_1", "d2")],
             [["evt2", "face.verified", fmt(base + timedelta(minutes=1)), 3, 1234, 2, 0]])
    c.expect("delivery origin tenancy", c.run("delivery_origin", "acc_b", "we_1", "d2", "acc_b", "we_1", "d2"), [])
    rows.clear()
    add("acc_a", "we_1", "d6", "evt6", "ocr.completed", base + timedelta(minutes=5), [f], [7], pos=(3, 1300))
    add("acc_a", "we_1", "d7", "evt7", "ocr.completed", base + timedelta(minutes=5), [r, f], [7, 8], pos=(3, 1301))
    add("acc_a", "we_1", "d8", "evt8", "ocr.completed", base + timedelta(minutes=6), [f], [7], pos=(3, 1302))
    add("acc_a", "we_1", "d8", "evt8", "ocr.completed", base + timedelta(minutes=6), [ok], [8], pos=(3, 1302), first=2, trigger="resend")
    add("acc_a", "we_1", "d9", "evt9", "test", base + timedelta(minutes=6), [f], [7], test=1)
    c.run(c.sql["insert_attempts"] + values(rows))
    lo, hi = int((base - timedelta(minutes=1)).timestamp()), int((base + timedelta(hours=1)).timestamp())
    page1 = c.run("failed_page", "acc_a", "we_1", lo, hi, 0, -2, "", 2)
    c.expect("failed page 1 (oldest first, test sends left out)", [(r[0], int(r[4]), int(r[5]), int(r[6])) for r in page1],
             [("d2", 3, 1234, 2), ("d6", 3, 1300, 1)])
    cursor = int(datetime.strptime(page1[-1][3], "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc).timestamp())
    c.expect("failed page 2 (after the cursor; a later success is not failed)",
             [r[0] for r in c.run("failed_page", "acc_a", "we_1", lo, hi, cursor, int(page1[-1][5]), page1[-1][0], 2)], ["d7"])
    c.expect("failed page window", [r[0] for r in c.run("failed_page", "acc_a", "we_1", lo, int((base + timedelta(minutes=2)).timestamp()), 0, -2, "", 10)], ["d2"])
    c.expect("failed page tenancy", c.run("failed_page", "acc_b", "we_1", lo, hi, 0, -2, "", 10), [])
    c.expect("status filter after a recovery run: a resent success is not failed",
             (page("acc_a", "we_1", status="failed")[:2], page("acc_a", "we_1", status="success")[:2]),
             ((["d9", "d7", "d6", "d2"], 4), (["d8", "d1"], 2)))
    c.expect("max attempts of listed deliveries",
             sorted((r[0], int(r[1])) for r in c.run("max_attempts", "acc_a", "we_1", lo, hi, ("d1", "d7", "d_none"))),
             [("d1", 4), ("d7", 2)])
    # Endpoint health: we_3 failed everything for six days after a success
    # seven days ago; we_4 succeeded an hour ago; we_5 never succeeded.
    rows.clear()
    week_ago = now - timedelta(days=7)
    add("acc_h", "we_3", "h1", "e_h1", "ocr.completed", week_ago, [ok], [1])
    add("acc_h", "we_3", "h2", "e_h2", "ocr.completed", week_ago + timedelta(days=1), [f], [1])
    add("acc_h", "we_3", "h3", "e_h3", "ocr.completed", now - timedelta(minutes=30), [r], [1])
    add("acc_h", "we_4", "h4", "e_h4", "ocr.completed", week_ago, [f], [1])
    add("acc_h", "we_4", "h5", "e_h5", "ocr.completed", now - timedelta(hours=1), [ok], [1])
    add("acc_h", "we_5", "h6", "e_h6", "ocr.completed", now - timedelta(days=2), [f], [1])
    add("acc_h", "we_5", "h7", "e_h7", "ocr.completed", now - timedelta(minutes=5), [f], [1])
    c.run(c.sql["insert_attempts"] + values(rows))
    failing = {r[1]: (r[2], sorted(zip(r[3], r[4])), r[5]) for r in
               c.run("failing_endpoints", int((now - timedelta(days=30)).timestamp()), int((now - timedelta(hours=2)).timestamp()), int((now - timedelta(days=1)).timestamp()))
               if r[0] == "acc_h"}
    c.expect("failing endpoints (last success before a day ago, attempted in the last two hours)", sorted(failing), ["we_3", "we_5"])
    hour = lambda t: fmt(t.replace(minute=0, second=0))
    c.expect("we_3's last success and first failure per hour", (failing["we_3"][0], failing["we_3"][1][:2]),
             (fmt(week_ago), [(hour(week_ago), "1970-01-01 00:00:00"), (hour(week_ago + timedelta(days=1)), fmt(week_ago + timedelta(days=1)))]))

    # Retention on servers without TTL: list partitions, drop an expired one.
    old = datetime(2020, 1, 15, tzinfo=timezone.utc)
    rows.clear()
    add("acc_a", "we_1", "d_old", "evt_old", "document.signed", old, [ok], [1])
    c.run(c.sql["insert_attempts"] + values(rows))
    for table in ("attempts", "delivery_index"):
        parts = sorted(r[0] for r in c.run("partitions", DB, table))
        c.expect(f"{table} partitions listed", "202001" in parts, True)
        c.run(c.sql["drop_partition"].replace("%s", table).replace("%d", "202001"))
        c.expect(f"{table} partition dropped", "202001" in [r[0] for r in c.run("partitions", DB, table)], False)
    c.expect("delivery index rows", int(c.run(f"SELECT uniqExact(delivery_id) FROM {DB}.delivery_index")[0][0]), 16)
    c.expect("other partitions kept", page("acc_a", "we_1")[1], 7)

    if c.failures:
        print(f"{len(c.failures)} check(s) failed on ClickHouse {version}")
        sys.exit(1)
    print(f"all statements ran and answered right on ClickHouse {version}")


if __name__ == "__main__":
    main()
