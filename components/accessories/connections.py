"""How the app reaches the accessories: the URLs every role gets in its environment. Pure.

The hosts are the accessories' aliases on the private network (components/accessories/databases.py).
"""

from __future__ import annotations

from components.config.model import PostgresConfig, RedisConfig, Secret


def connection_env(postgres: PostgresConfig, redis: RedisConfig) -> list[tuple[str, str | Secret]]:
    """The URL of each accessory that is on, a secret made from its password (`Secret.derive`)."""
    env: list[tuple[str, str | Secret]] = []
    p = postgres
    if p.enabled and p.password is not None:
        env.append(("DATABASE_URL", p.password.derive(lambda pw: f"postgresql://{p.user}:{pw}@postgres:5432/{p.database}")))
    if redis.enabled and redis.password is not None:
        env.append(("REDIS_URL", redis.password.derive(lambda pw: "redis://:" + pw + "@redis:6379/0")))
    return env
