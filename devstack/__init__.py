"""The development stack behind `make run` and `make test`.

    python -m devstack run
        Embedded Redis (unless REDIS_URL is set), collectstatic, migrate,
        load_demo, then one Celery worker and uvicorn; creates a first
        superuser and prints its password once. A worker, web server or Redis
        that dies is started again; one that dies more than 5 times within
        60 s stops the stack. Ctrl-C (SIGINT), SIGTERM or SIGHUP stops
        everything it started.

    python -m devstack test [--] [pytest arguments]
        Embedded Redis on a free port (unless REDIS_URL is set) around one
        pytest run, after collectstatic; exits with pytest's status.

Every long-lived child runs in a process group of its own, and is stopped in
order: web and worker first, Redis, which the worker needs to shut down
cleanly, last. The benchmarks and some tests start processes with the same
helpers, exported here.
"""

from __future__ import annotations

from devstack.embedded_redis import RedisFiles, start_redis
from devstack.processes import BASE_DIR, Child, StackError, free_port, manage, port_is_free, spawn, stop
from devstack.supervision import wait_until_serving

__all__ = [
    "BASE_DIR",
    "Child",
    "RedisFiles",
    "StackError",
    "free_port",
    "manage",
    "port_is_free",
    "spawn",
    "start_redis",
    "stop",
    "wait_until_serving",
]
