"""A real multi-node Ray cluster on one machine: ``ray start --head`` plus worker nodes.

Each node is its own ``ray start --block`` process (a raylet: a separate node to Ray),
started under ``setsid`` and stopped by killing its process group, so nothing outside this
cluster is touched (never a machine-wide ``ray stop``). Every node binds to 127.0.0.1 and
uses its own short temp dir and random ports. Used by the multi-node tests and by
``benchmarks/bench_ray.py --cluster``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _session_pids(sid: int) -> list[int]:
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.getsid(int(d)) == sid:
                    pids.append(int(d))
            except (ProcessLookupError, PermissionError):
                pass
    return pids


def _ray_exe() -> str:
    exe = Path(sys.executable).with_name("ray")
    return str(exe) if exe.exists() else "ray"


class LocalCluster:
    """A head node and ``n_workers`` worker nodes, each with ``num_cpus`` CPUs.

    Use as a context manager; ``address`` is the GCS address (``127.0.0.1:PORT``) to pass
    to ``ray.init`` or to set as ``RAY_ADDRESS`` for ``address="auto"``.
    """

    def __init__(self, n_workers=1, num_cpus=1, timeout=180.0, object_store_mb=200):
        self.n_workers, self.num_cpus, self.timeout = n_workers, num_cpus, timeout
        self.object_store = int(object_store_mb) * 1024 * 1024
        self.procs: list[subprocess.Popen] = []
        self.temp = tempfile.mkdtemp(prefix="r", dir="/tmp")  # short: Ray's socket paths
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"

    def _start(self, name, extra):
        log = open(os.path.join(self.temp, f"{name}.log"), "wb")
        cmd = [_ray_exe(), "start", "--block", "--node-ip-address", "127.0.0.1",
               "--num-cpus", str(self.num_cpus), "--num-gpus", "0",
               "--object-store-memory", str(self.object_store),
               "--resources", f'{{"node_{name}": 1}}', *extra]
        # a cluster of loopback nodes for one test: no token (else a driver without
        # ~/.ray/auth_token cannot connect)
        env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
        env.pop("RAY_ADDRESS", None)
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        proc.log_path = log.name
        self.procs.append(proc)
        return proc

    def start(self):
        """Start the head, then the workers; wait until every node is alive."""
        self._start("head", ["--head", "--port", str(self.port), "--temp-dir", self.temp,
                             "--include-dashboard", "false", "--disable-usage-stats",
                             "--dashboard-port", str(_free_port()),
                             "--dashboard-agent-listen-port", str(_free_port()),
                             "--metrics-export-port", str(_free_port()),
                             "--min-worker-port", "0", "--max-worker-port", "0"])
        self._wait(1)
        for i in range(self.n_workers):
            self._start(f"w{i}", ["--address", self.address,
                                  "--dashboard-agent-listen-port", str(_free_port()),
                                  "--metrics-export-port", str(_free_port()),
                                  "--min-worker-port", "0", "--max-worker-port", "0"])
        self._wait(1 + self.n_workers)
        return self

    def _wait(self, n_nodes):
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"ray start exited ({p.returncode}): "
                                       f"{Path(p.log_path).read_text()[-2000:]}")
            if self.alive_nodes() >= n_nodes:
                return
            time.sleep(1.0)
        raise TimeoutError(f"Ray cluster at {self.address}: fewer than {n_nodes} nodes alive "
                           f"after {self.timeout:.0f} s")

    def alive_nodes(self) -> int:
        """Nodes the cluster reports alive (asked with ``ray status``-free GCS query)."""
        code = ("import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False); "
                "print(sum(n['Alive'] for n in ray.nodes()))")
        try:
            out = subprocess.run([sys.executable, "-c", code, self.address],
                                 capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            return 0
        lines = out.stdout.strip().splitlines()
        return int(lines[-1]) if out.returncode == 0 and lines else 0

    def stop_node(self, i):
        """Kill node ``i`` (0: the head): every process of its session (raylet, workers).

        Ray's worker processes take process groups of their own but stay in the session
        that ``start_new_session`` gave the node, so the session id finds them all.
        """
        p = self.procs[i]
        for pid in _session_pids(p.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        p.wait(timeout=30)

    def stop(self):
        """Stop every node (workers first), remove the temp dir."""
        for i in reversed(range(len(self.procs))):
            self.stop_node(i)
        shutil.rmtree(self.temp, ignore_errors=True)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()


def run_in_fresh_process(test_file, flag, n_passed, timeout=900):
    """Run ``test_file``'s tests in a fresh pytest process with ``flag=1`` in its environment.

    A local Ray session (earlier test modules start some) leaves ``RAY_AUTH_MODE=token`` in
    the process environment and in-process state (ray-project/ray#4843, #54841): actors
    connecting to a token-less ``ray start`` cluster then die at creation. The child runs
    with the cluster's auth mode; asserts it passed ``n_passed`` tests.
    """
    env = dict(os.environ, RAY_AUTH_MODE="disabled", **{flag: "1"})
    env.pop("RAY_ADDRESS", None)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "-W", "ignore::DeprecationWarning", str(test_file)],
                       env=env, cwd=root, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    assert f"{n_passed} passed" in r.stdout, r.stdout[-3000:]
