#!/usr/bin/python3
"""test/bench/orm_job.py: the expiry job as an application writes it.

An async SQLAlchemy ORM job (SQLAlchemy 1.4 asyncio, asyncpg driver), the
way a FastAPI or aiohttp service runs it from APScheduler or Celery beat:
load the due subscriptions as ORM objects, then expire them one by one.
Three forms, all common:
  flush   flush each change (one UPDATE round trip a row, so that a failure
          in the middle is caught at its row), commit once at the end;
  commit  commit each row (so that one bad row does not undo the others,
          and no row lock is held for the whole job): one UPDATE and one
          COMMIT a row, each commit waiting for its WAL flush;
  once    change each object and commit once: the unit of work sends the
          UPDATEs at the commit as one executemany, which asyncpg sends
          without waiting for each row's reply (still one UPDATE a row).

bench.sh runs it against its throwaway cluster and checks the rows it
changed.  Prints "<rows expired> <seconds>", timed on the client from the
SELECT to the COMMIT (the engine is connected and warmed up first, as a
pool in a running service would be).

Usage: orm_job.py SOCKET_DIR PORT USER DATABASE AS_OF flush|commit|once
Needs Debian's python3-sqlalchemy, python3-asyncpg and python3-greenlet.
"""

import asyncio
import datetime
import sys
import time
import uuid

from sqlalchemy import Column, DateTime, String, select, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import declarative_base

Base = declarative_base()


class Subscription(Base):
    """The reference schema's subscriptions table, as the application maps it."""

    __tablename__ = "subscriptions"

    id = Column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    user_id = Column(UUID(as_uuid=True), nullable=False)
    plan = Column(String(20), nullable=False, default="free")
    status = Column(String(20), nullable=False, default="inactive")
    expires_at = Column(DateTime(timezone=True))
    created_at = Column(DateTime(timezone=True), nullable=False)
    updated_at = Column(DateTime(timezone=True), nullable=False)


async def expire_due(session, as_of, mode):
    """The job: every active subscription whose expiry has passed becomes expired."""
    now = datetime.datetime.now(datetime.timezone.utc)
    result = await session.execute(
        select(Subscription).where(
            Subscription.status == "active", Subscription.expires_at <= as_of
        )
    )
    expired = 0
    for subscription in result.scalars().all():
        subscription.status = "expired"
        subscription.updated_at = now
        if mode == "commit":
            await session.commit()
        elif mode == "flush":
            await session.flush()
        expired += 1
    await session.commit()
    return expired


async def main(socket_dir, port, user, database, as_of, mode):
    engine = create_async_engine(
        f"postgresql+asyncpg://{user}@/{database}",
        connect_args={"host": socket_dir, "port": int(port)},
    )
    async with AsyncSession(engine, expire_on_commit=False) as session:
        await session.execute(text("SELECT 1"))
        await session.commit()
        start = time.perf_counter()
        expired = await expire_due(session, as_of, mode)
        seconds = time.perf_counter() - start
    await engine.dispose()
    print(expired, f"{seconds:.6f}")


if __name__ == "__main__":
    if len(sys.argv) != 7 or sys.argv[6] not in ("flush", "commit", "once"):
        sys.exit(__doc__)
    socket_dir, port, user, database, as_of, mode = sys.argv[1:]
    asyncio.run(
        main(
            socket_dir,
            port,
            user,
            database,
            datetime.datetime.fromisoformat(as_of),
            mode,
        )
    )
