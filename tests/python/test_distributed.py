"""Quant-Noise, iPQ finetuning and packed layers inside DistributedDataParallel (Gloo, 2 processes).

Each test spawns two processes on 127.0.0.1; a worker's failed assertion fails the test with its
traceback, and a worker that hangs fails it after TIMEOUT_S. Ranks train on different batches, so
equal parameters on both ranks mean DDP averaged the gradients of the parameters qnoise trains.
"""
import datetime
import os
import socket
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

import qnoise
from models import Mlp

WORLD, BATCH, STEPS, TIMEOUT_S = 2, 4, 3, 45


def _entry(rank, port, worker, *args):
    torch.set_num_threads(1)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=TIMEOUT_S))
    try:
        worker(rank, *args)
    finally:
        dist.destroy_process_group()


def run_on_two_ranks(worker, *args):
    """worker(rank, *args) in two spawned processes; raises what a worker raised; fails on a hang."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    context = mp.start_processes(_entry, args=(port, worker) + args, nprocs=WORLD, join=False,
                                 start_method="spawn")
    deadline = time.monotonic() + TIMEOUT_S
    while not context.join(timeout=max(0.0, deadline - time.monotonic())):  # join re-raises a worker's error
        if time.monotonic() >= deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"{worker.__name__} did not finish within {TIMEOUT_S} s")


def both_ranks(tensor):
    """[rank 0's tensor, rank 1's tensor]."""
    out = [torch.empty_like(tensor) for _ in range(WORLD)]
    dist.all_gather(out, tensor.detach().contiguous())
    return out


def batch(step, rank):
    g = torch.Generator().manual_seed(1000 * step + rank)
    return torch.randn(BATCH, 32, generator=g), torch.randint(0, 10, (BATCH,), generator=g)


def both_batches(step):
    """What one process sees when it trains on both ranks' batches together (2 * BATCH)."""
    (x0, y0), (x1, y1) = batch(step, 0), batch(step, 1)
    return torch.cat([x0, x1]), torch.cat([y0, y1])


def loss_of(model, x, y):
    return nn.functional.cross_entropy(model(x), y)


def assert_same_on_both_ranks(tensors):
    for t in tensors:
        mine, theirs = both_ranks(t)
        assert torch.equal(mine, theirs)


# 1. Quant-Noise (both forms) on a model DDP trains.
def _train_with_quant_noise(rank, rate):
    torch.manual_seed(0)
    model, reference = Mlp(), Mlp()
    reference.load_state_dict(model.state_dict())
    qnoise.QuantNoise(model, [("fc1", rate, 8)])
    qnoise.quant_noise(model.fc2, rate, 8)  # fairseq's form
    registered = list(model.parameters())
    ddp = DDP(model, find_unused_parameters=rate > 0)  # rate > 0: DDP's graph search through the noise too
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    reference_optimizer = torch.optim.SGD(reference.parameters(), lr=0.5)
    for step in range(STEPS):
        x, y = batch(step, rank)
        torch.manual_seed(100 * step + rank)  # each rank its own masks, drawn again alike for DDP's pass
        local = torch.autograd.grad(loss_of(model, x, y), registered)
        torch.manual_seed(100 * step + rank)
        optimizer.zero_grad()
        loss_of(ddp, x, y).backward()
        for parameter, grad in zip(registered, local):
            mean = sum(both_ranks(grad)) / WORLD
            assert torch.allclose(parameter.grad, mean, atol=1e-6)  # the average of the ranks' noisy gradients
        assert not all(torch.allclose(p.grad, g) for p, g in zip(registered, local))
        optimizer.step()
        assert_same_on_both_ranks(registered)
        assert all(type(p) is nn.Parameter for p in registered)
        assert [id(p) for p in model.parameters()] == [id(p) for p in registered]  # what DDP registered

        reference_optimizer.zero_grad()
        loss_of(reference, *both_batches(step)).backward()
        reference_optimizer.step()
    close = [torch.allclose(p, r, atol=1e-6) for p, r in zip(registered, reference.parameters())]
    # without noise: the same as one process on the 2 * BATCH batch; with it, not
    assert all(close) if rate == 0 else not all(close)


@pytest.mark.parametrize("rate", [0.0, 0.25])
def test_quant_noise_trains_in_ddp(rate):
    run_on_two_ranks(_train_with_quant_noise, rate)


# 2. iPQ: each stage's centroids finetuned by DDP.
PLAN = {"stages": [{"name": "first", "layers": ["fc1"], "block_size": 8, "n_centroids": 16},
                   {"name": "second", "layers": ["fc2"], "block_size": 8, "n_centroids": 16}]}


def _compress(rank, noise_rate):
    """Mlp compressed by PLAN, each stage finetuned STEPS steps: in DDP on this rank's batches
    (rank given), or in this process on both ranks' batches (rank None). Returns the model and
    the centroids after each stage."""
    torch.manual_seed(0)
    model, centroids = Mlp(), []

    def finetune(stage):
        net = DDP(model) if rank is not None else model  # a new DDP per stage: its parameters changed
        optimizer = torch.optim.SGD(stage.parameters(), lr=0.5)
        for step in range(STEPS):
            optimizer.zero_grad()
            loss_of(net, *(batch(step, rank) if rank is not None else both_batches(step))).backward()
            optimizer.step()
        centroids.append([p.detach().clone() for n, p in model.named_parameters() if n.endswith("_centroids")])

    qnoise.quantize(model, dict(PLAN, noise_rate=noise_rate), finetune=finetune)
    return model, centroids


def _finetune_centroids(rank):
    model, centroids = _compress(rank, 0.0)
    reference, reference_centroids = _compress(None, 0.0)
    assert [len(c) for c in centroids] == [1, 2]  # stage 2 trains fc1's centroids and fc2's
    for stage, expected in zip(centroids, reference_centroids):
        assert_same_on_both_ranks(stage)
        assert all(torch.allclose(c, e, atol=1e-6) for c, e in zip(stage, expected))
    assert list(model.state_dict()) == list(Mlp().state_dict())  # the centroid parameters are gone
    assert_same_on_both_ranks(model.state_dict().values())
    assert all(torch.allclose(t, r, atol=1e-3) for t, r in zip(model.state_dict().values(),
                                                               reference.state_dict().values()))
    noisy, _ = _compress(rank, 0.25)  # later stages noised, each rank its own masks: still in step
    assert_same_on_both_ranks(noisy.state_dict().values())


def test_ipq_centroids_finetune_in_ddp():
    run_on_two_ranks(_finetune_centroids)


# 3. A loaded model with packed layers (fc1 int8, packed; fc2 float) in DDP.
def _packed_in_ddp(rank, path):
    model, plain = qnoise.load(path, Mlp()), qnoise.load(path, Mlp())
    assert isinstance(model.fc1, qnoise.PackedLayer) and isinstance(model.fc2, nn.Linear)
    ddp = DDP(model)
    x, _ = batch(0, rank)
    with torch.no_grad():
        assert torch.equal(ddp(x), plain(x))  # inference: what the model computes alone
        assert_same_on_both_ranks([ddp(batch(0, 0)[0])])
    # finetuning the float layer on the packed one's features: as one process on both batches
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    reference_optimizer = torch.optim.SGD(plain.parameters(), lr=0.5)
    for step in range(STEPS):
        optimizer.zero_grad()
        loss_of(ddp, *batch(step, rank)).backward()
        optimizer.step()
        reference_optimizer.zero_grad()
        loss_of(plain, *both_batches(step)).backward()
        reference_optimizer.step()
    assert_same_on_both_ranks(model.parameters())
    assert all(torch.allclose(p, r, atol=1e-6) for p, r in zip(model.parameters(), plain.parameters()))
    assert not torch.equal(model.fc2.weight, qnoise.load(path, Mlp()).fc2.weight)  # it did train


def test_packed_layers_in_ddp(tmp_path):
    torch.manual_seed(0)
    model = Mlp()
    qnoise.quantize(model, {"stages": [{"name": "fc1", "layers": ["fc1"], "scheme": "int8"}]})
    qnoise.save(model, tmp_path / "model.qnz")
    run_on_two_ranks(_packed_in_ddp, str(tmp_path / "model.qnz"))
