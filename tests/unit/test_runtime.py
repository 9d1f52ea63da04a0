"""Where the teacher runs: the device choice (the CUDA path is chosen by what the worker reports, so
it is tested here on a CPU machine), dtypes, batch sizes, out-of-memory back-off, progress lines,
and the labelling identity that keeps two ways of running a teacher apart."""
import logging

import pytest

from kd_tasks.config import ConfigError
from kd_tasks.models import runtime


@pytest.mark.parametrize("requested,cuda,count,expected", [
    ("auto", True, 1, "cuda"), ("auto", False, 0, "cpu"), ("auto", True, 0, "cpu"),
    ("cpu", True, 4, "cpu"), ("cuda", True, 1, "cuda"), ("cuda:1", True, 2, "cuda:1"),
])
def test_the_device_follows_what_the_worker_has(requested, cuda, count, expected):
    assert runtime.select_device(requested, cuda_available=cuda, cuda_count=count) == expected


def test_this_machine_has_no_gpu_so_auto_is_the_cpu():
    import torch

    assert runtime.select_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("requested,cuda,count", [("cuda", False, 0), ("cuda:2", True, 2)])
def test_a_gpu_the_worker_lacks_is_an_error_a_retry_elsewhere_may_cure(requested, cuda, count):
    with pytest.raises(runtime.DeviceUnavailable, match="route the task to a GPU worker"):
        runtime.select_device(requested, cuda_available=cuda, cuda_count=count)


def test_bad_devices_and_dtypes_are_config_errors():
    with pytest.raises(ConfigError, match="label_device 'gpu'"):
        runtime.select_device("gpu")
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        runtime.check_dtype("fp16", "cpu")
    assert runtime.check_dtype("fp16", "cuda:0") == "fp16" and runtime.check_dtype("bf16", "cpu") == "bf16"
    with pytest.raises(ConfigError, match="label_dtype 'int4'"):
        runtime.check_dtype("int4", "cpu")


def test_batch_size_by_device_and_the_labelling_identity():
    assert runtime.batch_size(0, "cpu") == 64 and runtime.batch_size(0, "cuda:0") == 512
    assert runtime.batch_size(96, "cuda") == 96
    assert runtime.labelling("0123456789ab", "fp32") == "0123456789ab"
    assert runtime.labelling("0123456789ab", "bf16") == "0123456789ab-bf16"


def test_cpu_threads_are_set_and_reported():
    import torch

    before = torch.get_num_threads()
    try:
        assert runtime.cpu_threads(1) == 1 and torch.get_num_threads() == 1
        assert runtime.cpu_threads(0) >= 1
    finally:
        torch.set_num_threads(before)


def test_an_out_of_memory_batch_is_retried_at_half_the_size_on_cuda_only():
    done = []

    def run(start, stop):
        if stop - start > 100:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        done.append((start, stop))

    assert runtime.on_each_batch(1000, 512, run, "cuda") == 64
    assert done[0] == (0, 64) and done[-1][1] == 1000 and sum(b - a for a, b in done) == 1000
    with pytest.raises(RuntimeError, match="out of memory"):
        runtime.on_each_batch(1000, 512, run, "cpu")  # on the CPU it is not the batch size's fault


def test_progress_lines_name_rows_rate_and_eta(caplog):
    now = [0.0]
    progress = runtime.Progress("soft labels ds=2024-01-10 shard 3", 1000, every_s=10, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="kd_tasks.models.runtime"):
        now[0] = 5.0
        progress(100)  # too soon for a line
        now[0] = 20.0
        progress(400)
    assert [r.getMessage() for r in caplog.records] == [
        "soft labels ds=2024-01-10 shard 3: 400/1000 rows (20 rows/s, ETA 30 s)"]


def test_labelling_in_process_gives_the_thread_count_back(kd_home, tiny_teacher):
    import torch

    from conftest import DS
    from kd_tasks.nightly import resolve_use_case
    from kd_tasks.stages.extract import extract_partition
    from kd_tasks.stages.soft_labels import generate_soft_labels

    uc = resolve_use_case("product_category", {"extract_lookback_days": 3, "label_threads": 1})
    extract_partition(uc, DS, f"sqlite:///{kd_home / 'warehouse.db'}")
    before = torch.get_num_threads()
    done = generate_soft_labels(uc, DS)
    assert {r["threads"] for r in done["runs"]} == {1}  # the teacher ran on the threads asked for
    assert torch.get_num_threads() == before  # and the stages after it get theirs back
