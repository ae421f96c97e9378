"""The container executor: agent code runs in a hardened Docker container."""

from py_code_mode.execution.container.executor import (
    DEFAULT_IMAGE,
    LABEL_OWNER_HOST,
    LABEL_OWNER_PID,
    LABEL_OWNER_START,
    LABEL_POOL,
    LABEL_SESSION,
    ContainerConfig,
    ContainerExecutor,
    drain_warm_pool,
    reap_stray_containers,
)

__all__ = [
    "DEFAULT_IMAGE",
    "LABEL_OWNER_HOST",
    "LABEL_OWNER_PID",
    "LABEL_OWNER_START",
    "LABEL_POOL",
    "LABEL_SESSION",
    "ContainerConfig",
    "ContainerExecutor",
    "drain_warm_pool",
    "reap_stray_containers",
]
