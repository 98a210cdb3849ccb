"""Two JAX processes on loopback: pool-wide passes split between them, results and selections as with one process."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from processes_worker import compute

WORKER = Path(__file__).with_name("processes_worker.py")
N_PROCESSES = 2
TIMEOUT_S = 600


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _distributed_unavailable():
    """Why this JAX cannot run several CPU processes, or None."""
    if not callable(getattr(getattr(jax, "distributed", None), "initialize", None)):
        return f"jax {jax.__version__} has no jax.distributed.initialize"
    if not hasattr(jax.config, "jax_cpu_collectives_implementation"):
        return f"jax {jax.__version__} has no CPU collectives (jax_cpu_collectives_implementation)"
    return None


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Results and work counts of each of two processes, and the one-process reference computed here meanwhile."""
    reason = _distributed_unavailable()
    if reason:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("processes")
    coordinator = f"127.0.0.1:{_free_port()}"
    workers = [subprocess.Popen([sys.executable, str(WORKER), str(out), "--coordinator", coordinator,
                                 "--num-processes", str(N_PROCESSES), "--process-id", str(i)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for i in range(N_PROCESSES)]
    try:
        reference, _ = compute()
        logs = [worker.communicate(timeout=TIMEOUT_S)[0] for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    for i, (worker, log) in enumerate(zip(workers, logs)):
        assert worker.returncode == 0, f"process {i} failed:\n{log[-4000:]}"
    results = [dict(np.load(out / f"process{i}.npz")) for i in range(N_PROCESSES)]
    work = [json.loads((out / f"process{i}.json").read_text()) for i in range(N_PROCESSES)]
    return reference, results, work


def test_every_process_gets_the_one_process_results(runs):
    """Kernels, probabilities, scores and selected indices: identical on both processes and as with one process."""
    reference, results, _ = runs
    assert set(results[0]) == set(reference)
    for name, expected in reference.items():
        np.testing.assert_array_equal(results[0][name], results[1][name], err_msg=name)
        if expected.dtype.kind in "iub":
            np.testing.assert_array_equal(results[0][name], expected, err_msg=name)
        else:
            np.testing.assert_allclose(results[0][name], expected, rtol=1e-6, atol=1e-6, err_msg=name)


def test_each_process_computes_about_half_of_every_pass(runs):
    """Every step split its rows (forward passes, gradient statistics, candidate scores) or kernel blocks in two."""
    _, _, work = runs
    for step in work[0]:
        kinds = [kind for kind in ("rows", "blocks") if f"{kind} of" in work[0][step]]
        assert kinds, f"{step} split nothing"
        for kind in kinds:
            done = [w[step].get(kind, 0) for w in work]
            total = work[0][step][f"{kind} of"]
            assert sum(done) == total, (step, kind, done, total)
            assert all(0.4 * total <= d <= 0.6 * total for d in done), (step, kind, done, total)
