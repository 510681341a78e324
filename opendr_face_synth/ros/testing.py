"""Helpers for tests and benchmarks that talk to the node over real rclpy / DDS (no mocks).

Isolation: every run gets its own ROS domain (``isolated_domain``) and discovery stays on this
machine (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST), so parallel runs and other robots never mix.

Benchmarks can choose the DDS set-up (``TRANSPORTS``): with LOCALHOST discovery rmw_fastrtps picks its
own transports, and best-effort messages larger than about 0.5 MB (a 640x480 rgb8 frame is 0.9 MB) then
mostly get lost between processes; Fast DDS's LARGE_DATA builtin transports (shared memory with large
segments, and TCP) deliver them, but rmw_fastrtps applies FASTDDS_BUILTIN_TRANSPORTS only when discovery
is not limited to LOCALHOST (SUBNET: isolated by the domain id alone).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import rclpy
from rclpy._rclpy_pybind11 import InvalidHandle
from rclpy.context import Context
from rclpy.executors import Executor, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy


def isolated_domain(offset: int) -> int:
    """A ROS_DOMAIN_ID for this process and ``offset`` (0..9), in FastDDS's valid range 0..232."""
    return (os.getpid() % 20) * 10 + offset % 10 + 1


TRANSPORTS: dict[str, dict[str, str]] = {
    "localhost": {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"},
    "large_data": {"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET", "FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"},
}


def localhost_env(domain_id: int, base: dict[str, str] | None = None, transport: str = "localhost") -> dict[str, str]:
    """Environment for child processes of an isolated run (``transport``: a key of TRANSPORTS)."""
    env = dict(os.environ if base is None else base)
    env["ROS_DOMAIN_ID"] = str(domain_id)
    env.pop("FASTDDS_BUILTIN_TRANSPORTS", None)
    env.update(TRANSPORTS[transport])
    env.pop("ROS_LOCALHOST_ONLY", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class RosHarness:
    """One rclpy context on an isolated domain, an executor thread, and a probe node for the test side."""

    def __init__(self, domain_id: int, threads: int = 4, transport: str = "localhost") -> None:
        os.environ.pop("FASTDDS_BUILTIN_TRANSPORTS", None)
        os.environ.update(TRANSPORTS[transport])
        os.environ.pop("ROS_LOCALHOST_ONLY", None)
        self.domain_id = domain_id
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        if threads > 1:
            self.executor: Executor = MultiThreadedExecutor(num_threads=threads, context=self.context)
        else:  # lighter: leaves the CPU to the node under test (benchmarks)
            self.executor = SingleThreadedExecutor(context=self.context)
        self.probe = Node("test_probe", context=self.context)
        self.executor.add_node(self.probe)
        self._stop = threading.Event()
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._spin, name="harness_executor", daemon=True)
        self._thread.start()
        self._lock = threading.Lock()

    def _spin(self) -> None:
        while not self._stop.is_set() and self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.1)
            except InvalidHandle as err:
                # A callback of a node that a test just destroyed; keep serving the others.
                self.errors.append(f"{type(err).__name__}: {err}")

    def add_node(self, node: Node) -> None:
        self.executor.add_node(node)

    def remove_node(self, node: Node, grace_s: float = 0.2) -> None:
        """Take ``node`` off the executor and give callbacks already running time to finish."""
        self.executor.remove_node(node)
        time.sleep(grace_s)

    def collect(self, msg_type: Any, topic: str, depth: int = 100, reliable: bool = True) -> tuple[list[Any], Any]:
        """Subscribe and append every message to a list; returns (list, subscription)."""
        received: list[Any] = []
        qos = QoSProfile(
            depth=depth, reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT
        )

        def on_msg(msg: Any) -> None:
            with self._lock:
                received.append(msg)

        sub = self.probe.create_subscription(msg_type, topic, on_msg, qos)
        return received, sub

    def publisher(self, msg_type: Any, topic: str, depth: int = 10) -> Any:
        return self.probe.create_publisher(msg_type, topic, depth)

    def wait_for_subscribers(self, publisher: Any, count: int = 1, timeout: float = 10.0) -> None:
        what = f"{count} subscriber(s) on {publisher.topic_name}"
        wait_until(lambda: publisher.get_subscription_count() >= count, timeout, what)

    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 10.0) -> Any:
        client = self.probe.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise TimeoutError(f"service {name} not available within {timeout} s")
            future = client.call_async(request)
            wait_until(future.done, timeout, f"answer of {name}")
            return future.result()
        finally:
            self.probe.destroy_client(client)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
        self.executor.shutdown(timeout_sec=5.0)
        self.probe.destroy_node()
        rclpy.try_shutdown(context=self.context)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str = "condition", period: float = 0.02) -> None:
    """Poll ``predicate`` until true; TimeoutError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(period)


def diagnostics_values(array: Any, name_contains: str = "face_synth") -> dict[str, str]:
    """Key/values of the first DiagnosticStatus whose name contains ``name_contains`` ({} if none)."""
    for status in array.status:
        if name_contains in status.name:
            values = {kv.key: kv.value for kv in status.values}
            level = status.level
            values["_level"] = str(int.from_bytes(level, "little") if isinstance(level, bytes) else level)
            values["_message"] = status.message
            return values
    return {}
