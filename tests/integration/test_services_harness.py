"""The harness's own servers are real and restartable."""

from __future__ import annotations

import pymysql
import redis

from tests.harness.services import MariaDBServer, RedisServer


def test_redis_is_real_and_restartable(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    assert client.info("server")["redis_version"]
    redis_server.stop()
    redis_server.start()
    assert client.ping()


def test_mariadb_is_real(mariadb_server: MariaDBServer) -> None:
    conn = pymysql.connect(host="127.0.0.1", port=mariadb_server.port, user="root")
    with conn.cursor() as cur:
        cur.execute("SELECT VERSION()")
        row = cur.fetchone()
    conn.close()
    assert row is not None and "MariaDB" in row[0]
