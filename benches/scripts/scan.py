"""Reads a whole query result through one client and reports how long it took.

    python scan.py adbc    grpc://127.0.0.1:PORT   "SELECT * FROM lineitem"
    python scan.py psycopg "host=… port=… user=tarn" "SELECT * FROM lineitem"

Prints one JSON line: {"rows": N, "seconds": S}. The clock starts before the query is sent
and stops when the last row is in Python's hands: Arrow record batches for ADBC (what a
dataframe library gets), tuples of Python values for psycopg (what a DB-API user gets).
"""

import json
import sys
import time


def adbc(uri, sql):
    import adbc_driver_flightsql.dbapi as flightsql

    with flightsql.connect(uri) as conn, conn.cursor() as cur:
        start = time.perf_counter()
        cur.execute(sql)
        rows = sum(batch.num_rows for batch in cur.fetch_record_batch())
        return rows, time.perf_counter() - start


def pg(dsn, sql):
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor() as cur:
        start = time.perf_counter()
        cur.execute(sql)
        rows = 0
        while chunk := cur.fetchmany(50_000):
            rows += len(chunk)
        return rows, time.perf_counter() - start


if __name__ == "__main__":
    mode, target, sql = sys.argv[1:4]
    rows, seconds = {"adbc": adbc, "psycopg": pg}[mode](target, sql)
    print(json.dumps({"rows": rows, "seconds": seconds}))
