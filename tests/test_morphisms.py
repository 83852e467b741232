"""Function-preserving transformations (morphisms): exactness, legality, purity.

Exactness metric: eval mode, fp32, noise off, max|y_child - y_parent| / max|y_parent|
below 1e-5, with randomised BatchNorm statistics/affine and gates in the parent.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from eas import TABLE1, Architecture, Conv, Dense, SearchSpace, Skip, build_network, densenet_bc
from eas import morphisms as M
from eas.network import ChildNet

pytestmark = pytest.mark.usefixtures("one_thread_module")


SMALL = SearchSpace(kernel_sizes=(1, 3, 5), filters=(4, 6, 8, 12, 16), fc_units=(8, 12, 16, 24),
                    growth_rates=(2, 3, 4, 6))


def randomize(net: ChildNet, seed: int = 0) -> ChildNet:
    """Random BN statistics/affine and gates (seeded torch.Generator); eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.3)
        for p in net.gates.values():
            p.copy_(torch.randn((), generator=g))
    return net.eval()


def make(arch: str | Architecture, shape: tuple[int, int, int], seed: int = 0) -> ChildNet:
    """A built, randomised parent in eval mode."""
    return randomize(build_network(arch, shape, seed=seed), seed)


def inputs(net: ChildNet, n: int = 4, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *net.input_shape, generator=g)


def rel_err(parent: ChildNet, child: ChildNet, x: torch.Tensor | None = None) -> float:
    """max|y_child - y_parent| / max|y_parent| in eval mode."""
    x = inputs(parent) if x is None else x
    pt, ct = parent.training, child.training
    parent.eval()
    child.eval()
    with torch.no_grad():
        yp, yc = parent(x), child(x)
    parent.train(pt)
    child.train(ct)
    return float((yc - yp).abs().max() / yp.abs().max())


def snapshot(net: ChildNet) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def assert_unchanged(net: ChildNet, snap: dict[str, torch.Tensor], arch: Architecture) -> None:
    assert net.arch == arch
    sd = net.state_dict()
    assert sd.keys() == snap.keys()
    for k, v in sd.items():
        assert torch.equal(v, snap[k]), k


def assert_no_shared_storage(parent: ChildNet, child: ChildNet) -> None:
    ptrs = {t.untyped_storage().data_ptr() for t in parent.state_dict().values()}
    for k, t in child.state_dict().items():
        assert t.untyped_storage().data_ptr() not in ptrs, k


def check_child(child: ChildNet) -> None:
    """The child's weights match its architecture string."""
    assert Architecture.parse(str(child.arch)) == child.arch
    fresh = build_network(child.arch, child.input_shape)
    got = {k: v.shape for k, v in child.state_dict().items()}
    want = {k: v.shape for k, v in fresh.state_dict().items()}
    assert got == want


# ------------------------------------------------------------ random architectures
@st.composite
def plain_archs(draw: st.DrawFn) -> tuple[str, tuple[int, int, int]]:
    """Random small plain CNNs (conv/pool/FC) for 8x8 or 16x16 inputs."""
    size = draw(st.sampled_from([8, 16]))
    channels = draw(st.sampled_from([1, 3]))
    stages = draw(st.integers(1, 3))
    tokens: list[str] = []
    hw = size
    for s in range(stages):
        for _ in range(draw(st.integers(1, 3))):
            f = draw(st.sampled_from(SMALL.filters[:3]))
            k = draw(st.sampled_from(SMALL.kernel_sizes))
            tokens.append(f"C({f},{k},1)")
        if s < stages - 1 or draw(st.booleans()):
            mode = draw(st.sampled_from(["MAX", "AVG"]))
            tokens.append(f"P(2,2,{mode})")
            hw //= 2
    for _ in range(draw(st.integers(0, 2))):
        tokens.append(f"FC({draw(st.sampled_from(SMALL.fc_units[:2]))})")
    tokens.append("SM(3)")
    return ", ".join(tokens), (channels, size, size)


@st.composite
def dense_archs(draw: st.DrawFn) -> tuple[str, tuple[int, int, int]]:
    """Random small DenseNets (optional stem, 1-2 blocks, with or without bottleneck)."""
    size = 8
    growth = draw(st.sampled_from(SMALL.growth_rates[:3]))
    bottle = draw(st.booleans())
    stem = draw(st.booleans())
    tokens: list[str] = []
    channels = 3
    if stem:
        channels = 2 * growth
        tokens.append(f"C({channels},3,1)")
    nblocks = draw(st.integers(1, 2))
    hw = size
    for b in range(nblocks):
        n = draw(st.integers(1, 3))
        tokens += [f"DL({growth},3,{4 * growth if bottle else 0})"] * n
        channels += n * growth
        if b < nblocks - 1:
            channels = max(channels // 2, 1)
            tokens += [f"C({channels},1,1)", "P(2,2,AVG)"]
            hw //= 2
    tokens += [f"P({hw},{hw},AVG)", "SM(3)"]
    return ", ".join(tokens), (3, size, size)


def add_random_skips(net: ChildNet, rng: np.random.Generator, count: int) -> ChildNet:
    """Apply up to ``count`` random legal skip additions."""
    for _ in range(count):
        cands = M.skip_candidates(net.arch, net.input_shape)
        if not cands:
            break
        src, dst, mode = cands[int(rng.integers(len(cands)))]
        net = M.add_skip(net, src, dst, mode)
    return net


def legal_actions(net: ChildNet, space: SearchSpace, kinds: tuple[str, ...]) -> dict[str, list]:
    """All legal actions of the given kinds on ``net``."""
    arch = net.arch
    out: dict[str, list] = {}
    if "wider" in kinds:
        out["wider"] = M.widenable_layers(arch, space)
    if "deeper" in kinds:
        out["deeper"] = M.deeper_positions(arch)
    if "insert" in kinds:
        out["insert"] = M.dense_insert_positions(arch)
    if "skip" in kinds:
        out["skip"] = M.skip_candidates(arch, net.input_shape)
    return {k: v for k, v in out.items() if v}


def apply_action(net: ChildNet, kind: str, action, space: SearchSpace,
                 rng: np.random.Generator) -> ChildNet:
    """Apply one action (noise off)."""
    if kind == "wider":
        return M.net2wider(net, action, space=space, rng=rng, noise=False)
    if kind == "deeper":
        return M.net2deeper(net, *action, kernel=int(rng.choice(space.kernel_sizes[1:])), rng=rng)
    if kind == "insert":
        return M.dense_insert(net, *action, rng=rng)
    return M.add_skip(net, *action)


def random_chain(net: ChildNet, steps: int, space: SearchSpace, rng: np.random.Generator,
                 kinds: tuple[str, ...]) -> tuple[ChildNet, list[tuple[str, object]]]:
    """Apply ``steps`` random legal transformations; returns the final net and the log."""
    log: list[tuple[str, object]] = []
    for _ in range(steps):
        acts = legal_actions(net, space, kinds)
        if not acts:
            break
        kind = sorted(acts)[int(rng.integers(len(acts)))]
        action = acts[kind][int(rng.integers(len(acts[kind])))]
        net = apply_action(net, kind, action, space, rng)
        log.append((kind, action))
    return net, log


# =========================================================================== tests
TABLE1_SHAPE = (3, 32, 32)
FLAT = "C(16,3,1), P(2,2,MAX), C(32,3,1), FC(64), SM(10)"
MNIST = "C(16,3,1), P(2,2,MAX), C(32,3,1), P(2,2,MAX), C(64,3,1), P(3,3,AVG), FC(64), SM(10)"
TOL = 1e-5


@pytest.fixture(scope="module")
def table1() -> ChildNet:
    return make(TABLE1, TABLE1_SHAPE)


@pytest.fixture(scope="module")
def table1_x(table1) -> torch.Tensor:
    return inputs(table1, 2)


# ----------------------------------------------------------------- net2wider
@pytest.mark.parametrize("layer", [0, 2, 4, 6, 8])
def test_net2wider_table1_exact(table1, table1_x, layer):
    snap = snapshot(table1)
    child = M.net2wider(table1, layer, rng=np.random.default_rng(layer), noise=False)
    assert rel_err(table1, child, table1_x) < TOL
    old, new = table1.arch.layers[layer], child.arch.layers[layer]
    assert SearchSpace().next_width(old) == (new.filters if hasattr(new, "filters") else new.units)
    check_child(child)
    assert_unchanged(table1, snap, Architecture.parse(TABLE1))
    assert_no_shared_storage(table1, child)


def test_net2wider_follows_eq1_to_3():
    """New units copy G(j); BN entries follow; the next layer's columns are divided by counts."""
    net = make("C(4,3,1), C(5,3,1), FC(6), SM(3)", (1, 8, 8))
    child = M.net2wider(net, 0, 7, rng=np.random.default_rng(3), noise=False)
    w_old, w_new = net.layers[0].conv.weight, child.layers[0].conv.weight
    g = [next(k for k in range(4) if torch.equal(w_new[j], w_old[k])) for j in range(7)]
    assert g[:4] == [0, 1, 2, 3]
    counts = np.bincount(g, minlength=4)
    for name in ("weight", "bias", "running_mean", "running_var"):
        assert torch.equal(getattr(child.layers[0].bn, name), getattr(net.layers[0].bn, name)[g])
    nxt_old, nxt_new = net.layers[1].conv.weight, child.layers[1].conv.weight
    for j in range(7):
        torch.testing.assert_close(nxt_new[:, j], nxt_old[:, g[j]] / counts[g[j]])
    assert rel_err(net, child) < TOL


def test_net2wider_28x28_and_fc(table1):
    net = make(MNIST, (1, 28, 28))
    for layer in (0, 2, 4, 6):
        child = M.net2wider(net, layer, rng=np.random.default_rng(0), noise=False)
        assert rel_err(net, child) < TOL


def test_net2wider_before_flatten_remaps_every_spatial_column():
    net = make(FLAT, (1, 28, 28))
    child = M.net2wider(net, 2, rng=np.random.default_rng(1), noise=False)
    assert child.arch.layers[2].filters == 64
    old_fc, new_fc = net.layers[3].fc.weight, child.layers[3].fc.weight
    assert old_fc.shape == (64, 32 * 14 * 14) and new_fc.shape == (64, 64 * 14 * 14)
    w_old, w_new = net.layers[2].conv.weight, child.layers[2].conv.weight
    g = [next(k for k in range(32) if torch.equal(w_new[j], w_old[k])) for j in range(64)]
    counts = np.bincount(g, minlength=32)
    o, n = old_fc.reshape(64, 32, 196), new_fc.reshape(64, 64, 196)
    for j in range(64):
        torch.testing.assert_close(n[:, j], o[:, g[j]] / counts[g[j]])
    assert rel_err(net, child) < TOL


def test_net2wider_through_cat_skip():
    net = make("C(4,3,1), C(6,3,1), C(8,3,1), S(0,2,CAT), P(2,2,MAX), FC(8), SM(3)", (3, 8, 8))
    for layer in (0, 1, 2, 4):
        child = M.net2wider(net, layer, space=SMALL, rng=np.random.default_rng(layer),
                            noise=False)
        assert rel_err(net, child) < TOL


def test_net2wider_dense_layer_delegates():
    net = make("C(4,3,1), DL(2,3,0), DL(2,3,0), P(8,8,AVG), SM(3)", (3, 8, 8))
    child = M.net2wider(net, 1, space=SMALL, rng=np.random.default_rng(0), noise=False)
    assert child.arch.layers[1].growth == 3
    assert rel_err(net, child) < TOL


def test_net2wider_float64_and_determinism():
    net = make("C(4,3,1), P(2,2,MAX), FC(8), SM(3)", (1, 8, 8)).double()
    a = M.net2wider(net, 0, 8, rng=np.random.default_rng(5))
    b = M.net2wider(net, 0, 8, rng=np.random.default_rng(5))
    assert all(t.dtype == torch.float64 for t in a.parameters())
    for (k, u), (_, v) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(u, v), k
    exact = M.net2wider(net, 0, 8, rng=np.random.default_rng(5), noise=False)
    assert rel_err(net, exact, inputs(net).double()) < 1e-12


@pytest.mark.parametrize(
    ("arch", "layer", "kwargs", "match"),
    [
        ("C(4,3,1), FC(8), SM(3)", 5, {}, "out of range"),
        ("C(4,3,1), FC(8), SM(3)", -1, {}, "out of range"),
        ("C(4,3,1), P(2,2,MAX), FC(8), SM(3)", 1, {}, "only convolution"),
        ("C(4,3,1), FC(8), SM(3)", 2, {}, "only convolution"),
        ("C(4,3,1), FC(8), SM(3)", 0, {"width": 4}, "larger value"),
        ("C(4,3,1), FC(8), SM(3)", 0, {"width": 3}, "larger value"),
        ("C(4,3,1), FC(8), SM(3)", 0, {"width": 5, "space": SMALL}, "not one of"),
        ("C(16,3,1), FC(8), SM(3)", 0, {"space": SMALL}, "largest level"),
        ("C(4,3,1), C(4,3,1), S(0,1,ADD), FC(8), SM(3)", 0, {}, "ADD skip"),
        ("C(4,3,1), C(4,3,1), S(0,1,ADD), FC(8), SM(3)", 1, {}, "ADD skip"),
        ("C(4,3,1), C(4,3,1), S(0,1,CAT), C(8,3,1), S(1,2,ADD), FC(8), SM(3)", 0, {},
         "ADD skip"),
    ],
)
def test_net2wider_refuses(arch, layer, kwargs, match):
    net = make(arch, (1, 8, 8))
    snap = snapshot(net)
    with pytest.raises(ValueError, match=match):
        M.net2wider(net, layer, **kwargs)
    assert_unchanged(net, snap, Architecture.parse(arch))


# ----------------------------------------------------------------- net2deeper
@pytest.mark.parametrize("block", [0, 1, 2, 3, 4])
def test_net2deeper_table1_exact(table1, table1_x, block):
    snap = snapshot(table1)
    child = M.net2deeper(table1, block, 0)
    q = table1.arch.blocks()[block][0] + 1
    assert str(child.arch.layers[q]) in ("C(16,3,1)", "C(32,3,1)", "C(64,3,1)", "C(128,3,1)",
                                         "FC(256)")
    assert rel_err(table1, child, table1_x) < TOL
    check_child(child)
    assert_unchanged(table1, snap, Architecture.parse(TABLE1))
    assert_no_shared_storage(table1, child)


@pytest.mark.parametrize("kernel", [1, 3, 5])
def test_net2deeper_kernels_and_cat_output(kernel):
    arch = "C(4,3,1), C(6,3,1), S(0,1,CAT), P(2,2,MAX), FC(8), FC(8), SM(3)"
    net = make(arch, (3, 8, 8))
    child = M.net2deeper(net, 0, 1, kernel)
    assert child.arch.layers[2] == Conv(10, kernel, 1)
    assert child.arch.skips == net.arch.skips
    assert rel_err(net, child) < TOL
    fc = M.net2deeper(net, 1, 0)
    assert str(fc.arch.layers[4]) == "FC(8)" and rel_err(net, fc) < TOL


def test_net2deeper_shifts_skips():
    net = make("C(4,3,1), C(4,3,1), C(4,3,1), S(0,2,ADD), S(1,2,CAT), FC(8), SM(3)", (1, 8, 8))
    with torch.no_grad():
        net.gates["0_2"].fill_(0.7)
    child = M.net2deeper(net, 0, 0)
    assert str(child.arch) == ("C(4,3,1), C(4,3,1), C(4,3,1), C(4,3,1), S(0,3,ADD), "
                               "S(2,3,CAT), FC(8), SM(3)")
    assert child.gates["0_3"].item() == pytest.approx(0.7)
    assert rel_err(net, child) < TOL


def test_net2deeper_with_data_batch_eval_and_train():
    net = make("C(4,3,1), P(2,2,MAX), C(6,3,1), FC(8), SM(3)", (3, 8, 8))
    batch = inputs(net, 16, seed=7)
    child = M.net2deeper(net, 1, 0, data_batch=batch)
    bn = child.layers[3].bn
    assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))
    assert rel_err(net, child) < TOL
    assert rel_err(net, child, batch) < TOL
    # a parent in train mode: the statistics come from train-mode activations, so in train
    # mode on that very batch the child matches; without data it does not (BN uses batch stats)
    net.train()
    fitted = M.net2deeper(net, 1, 0, data_batch=batch)
    plain = M.net2deeper(net, 1, 0)
    assert fitted.training and plain.training
    with torch.no_grad():  # train-mode forwards update running stats: run them on copies
        y, yf, yp = (m.clone()(batch) for m in (net, fitted, plain))
    assert float((yf - y).abs().max() / y.abs().max()) < 1e-4
    assert float((yp - y).abs().max() / y.abs().max()) > 1e-3
    net.eval()
    assert rel_err(net, fitted) < TOL and rel_err(net, plain) < TOL


def test_net2deeper_fc_data_batch():
    net = make("C(4,3,1), FC(8), FC(6), SM(3)", (1, 8, 8))
    child = M.net2deeper(net, 0, 2, data_batch=inputs(net, 8))
    assert str(child.arch.layers[3]) == "FC(6)"
    assert rel_err(net, child) < TOL


@pytest.mark.parametrize(
    ("arch", "block", "position", "kwargs", "match"),
    [
        ("C(4,3,1), FC(8), SM(3)", 3, 0, {}, "block 3 is out of range"),
        ("C(4,3,1), FC(8), SM(3)", 0, 2, {}, "position 2 is out of range"),
        ("C(4,3,1), FC(8), SM(3)", 0, -1, {}, "out of range"),
        ("C(4,3,1), P(2,2,MAX), SM(3)", 1, 0, {}, "out of range"),
        ("C(4,3,1), FC(8), SM(3)", 0, 0, {"kernel": 2}, "odd"),
        ("C(4,3,1), FC(8), SM(3)", 0, 0, {"kernel": 0}, "odd"),
        ("C(4,3,1), FC(8), SM(3)", 0, 0, {"kernel": 7, "space": SMALL}, "kernel sizes"),
        ("C(4,3,1), C(4,3,1), S(0,1,ADD), FC(8), SM(3)", 0, 1, {}, "ADD skip"),
        ("C(4,3,1), C(4,3,1), S(0,1,ADD), C(4,3,1), S(1,2,CAT), FC(8), SM(3)", 0, 2, {},
         "can be negative"),
        ("C(4,3,1), DL(2,3,0), P(8,8,AVG), SM(3)", 0, 1, {}, "not a conv or FC"),
    ],
)
def test_net2deeper_refuses(arch, block, position, kwargs, match):
    net = make(arch, (1, 8, 8))
    snap = snapshot(net)
    with pytest.raises(ValueError, match=match):
        M.net2deeper(net, block, position, **kwargs)
    assert_unchanged(net, snap, Architecture.parse(arch))


# ----------------------------------------------------------------- DenseNet
DENSE_SMALL = "C(6,3,1), DL(3,3,0), DL(3,3,0), C(6,1,1), P(2,2,AVG), DL(3,3,0), P(4,4,AVG), SM(3)"


@pytest.fixture(scope="module")
def bc16() -> ChildNet:
    return make(densenet_bc(16, 12, spatial=8), (3, 8, 8))


@pytest.fixture(scope="module")
def bc40() -> ChildNet:
    return make(densenet_bc(40, 40, spatial=8), (3, 8, 8))


def test_dense_widen_small_bc(bc16):
    snap = snapshot(bc16)
    x = inputs(bc16, 2)
    blocks = bc16.arch.dense_blocks()
    for layer in (blocks[0][0], blocks[1][-1], blocks[2][-1]):
        child = M.dense_widen(bc16, layer, rng=np.random.default_rng(layer), noise=False)
        assert child.arch.layers[layer].growth == 40
        assert rel_err(bc16, child, x) < TOL
    check_child(child)
    assert_unchanged(bc16, snap, bc16.arch)
    assert_no_shared_storage(bc16, child)


def test_dense_widen_follows_eq4():
    """The transition conv reads [O_0, O_1, O_2]: widening O_1 remaps exactly its columns."""
    net = make(DENSE_SMALL, (3, 8, 8))
    child = M.dense_widen(net, 1, 6, rng=np.random.default_rng(2), noise=False)
    w_old, w_new = net.layers[1].conv.weight, child.layers[1].conv.weight
    g = [next(k for k in range(3) if torch.equal(w_new[j], w_old[k])) for j in range(6)]
    counts = np.bincount(g, minlength=3)
    expected = list(range(6)) + [6 + v for v in g] + [9, 10, 11]
    for layer in (2, 3):
        old, new = net.layers[layer].conv.weight, child.layers[layer].conv.weight
        assert new.shape[1] == old.shape[1] + 3
        for m, k in enumerate(expected[: new.shape[1]]):
            div = counts[k - 6] if 6 <= k < 9 else 1
            torch.testing.assert_close(new[:, m], old[:, k] / div)
    assert rel_err(net, child) < TOL


@pytest.mark.parametrize("layer", [6, pytest.param(1, marks=pytest.mark.slow),
                                   pytest.param(20, marks=pytest.mark.slow)])
def test_dense_widen_bc40(bc40, layer):
    child = M.dense_widen(bc40, layer, space=SearchSpace(), rng=np.random.default_rng(0),
                          noise=False)
    assert child.arch.layers[layer].growth == 44
    assert rel_err(bc40, child, inputs(bc40, 2)) < TOL


@pytest.mark.parametrize("bottleneck", [False, True])
def test_dense_insert_every_position(bottleneck):
    arch = DENSE_SMALL.replace("DL(3,3,0)", "DL(3,3,12)") if bottleneck else DENSE_SMALL
    net = make(arch, (3, 8, 8))
    snap = snapshot(net)
    positions = M.dense_insert_positions(net.arch)
    assert positions == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    for b, p in positions:
        child = M.dense_insert(net, b, p, rng=np.random.default_rng(p))
        at = net.arch.dense_blocks()[b][0] + p
        assert child.arch.layers[at] == Dense(3, 3, 12 if bottleneck else 0)
        assert len(child.arch.dense_blocks()[b]) == len(net.arch.dense_blocks()[b]) + 1
        assert rel_err(net, child) < TOL
        check_child(child)
        assert_no_shared_storage(net, child)
    assert_unchanged(net, snap, net.arch)


def test_dense_insert_growth_and_kernel():
    net = make(DENSE_SMALL, (3, 8, 8))
    child = M.dense_insert(net, 0, 1, growth=6, kernel=5, rng=np.random.default_rng(0))
    assert child.arch.layers[2] == Dense(6, 5, 0)
    assert rel_err(net, child) < TOL


def test_dense_insert_bc16(bc16):
    child = M.dense_insert(bc16, 1, 1, rng=np.random.default_rng(0))
    assert child.arch.layers[6] == Dense(12, 3, 48)
    assert rel_err(bc16, child, inputs(bc16, 2)) < TOL


@pytest.mark.slow
@pytest.mark.parametrize(("block", "position"), [(0, 0), (1, 3), (2, 6)])
def test_dense_insert_bc40(bc40, block, position):
    child = M.dense_insert(bc40, block, position, rng=np.random.default_rng(0))
    assert rel_err(bc40, child, inputs(bc40, 2)) < TOL


@pytest.mark.parametrize(
    ("arch", "block", "position", "kwargs", "match"),
    [
        (DENSE_SMALL, 2, 0, {}, "dense block 2 is out of range"),
        (DENSE_SMALL, 0, 3, {}, "position 3 is out of range"),
        (DENSE_SMALL, 0, 0, {"kernel": 4}, "odd"),
        (DENSE_SMALL, 0, 0, {"growth": 0}, "positive"),
        (DENSE_SMALL, 0, 0, {"growth": 5, "space": SMALL}, "growth rates"),
        ("DL(2,3,0), DL(2,3,0), P(8,8,AVG), SM(3)", 0, 0, {}, "negative"),
        ("C(4,3,1), C(4,3,1), S(0,1,ADD), DL(2,3,0), P(8,8,AVG), SM(3)", 0, 0, {}, "negative"),
        ("C(4,3,1), FC(8), SM(3)", 0, 0, {}, "out of range"),
    ],
)
def test_dense_insert_refuses(arch, block, position, kwargs, match):
    net = make(arch, (3, 8, 8))
    with pytest.raises(ValueError, match=match):
        M.dense_insert(net, block, position, **kwargs)


def test_dense_insert_after_image_block_later_position():
    net = make("DL(2,3,0), DL(2,3,0), P(8,8,AVG), SM(3)", (3, 8, 8))
    assert M.dense_insert_positions(net.arch) == [(0, 1), (0, 2)]
    for p in (1, 2):
        assert rel_err(net, M.dense_insert(net, 0, p, rng=np.random.default_rng(0))) < TOL


def test_dense_widen_refuses():
    net = make(DENSE_SMALL, (3, 8, 8))
    with pytest.raises(ValueError, match="not a dense layer"):
        M.dense_widen(net, 0)
    with pytest.raises(ValueError, match="out of range"):
        M.dense_widen(net, 99)
    with pytest.raises(ValueError, match="larger value"):
        M.dense_widen(net, 1, 3)
    top = make("C(4,3,1), DL(6,3,0), P(8,8,AVG), SM(3)", (3, 8, 8))
    with pytest.raises(ValueError, match="largest level"):
        M.dense_widen(top, 1, space=SMALL)


# ----------------------------------------------------------------- skips
@pytest.mark.parametrize("mode", ["ADD", "CAT"])
def test_add_skip_exact(mode):
    arch = "C(4,3,1), C(4,3,1), C(4,3,1), P(2,2,MAX), C(4,3,1), FC(8), SM(3)"
    net = make(arch, (3, 8, 8))
    snap = snapshot(net)
    child = M.add_skip(net, 0, 2, mode)
    assert child.arch.skips == (Skip(0, 2, mode),)
    assert rel_err(net, child) < TOL
    if mode == "ADD":
        assert child.gates["0_2"].item() == 0.0
    else:
        w = child.layers[4].conv.weight
        assert w.shape[1] == 8 and torch.count_nonzero(w[:, 4:]) == 0
    check_child(child)
    assert_unchanged(net, snap, Architecture.parse(arch))
    assert_no_shared_storage(net, child)


def test_add_skip_cat_into_dense_block_and_flatten():
    net = make("C(4,3,1), C(4,3,1), DL(2,3,0), C(4,1,1), C(4,3,1), FC(8), SM(3)", (3, 8, 8))
    a = M.add_skip(net, 0, 1, "CAT")
    assert a.layers[2].conv.weight.shape[1] == 8
    assert rel_err(net, a) < TOL
    b = M.add_skip(net, 3, 4, "CAT")
    assert b.layers[5].fc.weight.shape[1] == 8 * 64
    assert rel_err(net, b) < TOL


def test_add_skip_keeps_existing_gates():
    net = make("C(4,3,1), C(4,3,1), S(0,1,ADD), C(4,3,1), FC(8), SM(3)", (3, 8, 8))
    child = M.add_skip(net, 1, 2, "ADD")
    assert torch.equal(child.gates["0_1"], net.gates["0_1"])
    assert rel_err(net, child) < TOL
    # an ADD into a layer whose output already concatenates: the keys are re-owned
    cat = make("C(2,3,1), C(4,3,1), C(2,3,1), S(0,2,CAT), C(4,3,1), FC(8), SM(3)", (3, 8, 8))
    child = M.add_skip(cat, 1, 2, "ADD")
    assert rel_err(cat, child) < TOL
    assert rel_err(child, M.net2deeper(child, 0, 3)) < TOL


def test_duplicated_channels_through_two_cat_paths():
    """Layer 0's channels reach layer 2 twice (directly and via layer 1): both copies remap."""
    arch = "C(2,3,1), C(2,3,1), S(0,1,CAT), C(2,3,1), S(0,2,CAT), S(1,2,CAT), FC(8), SM(3)"
    net = make(arch, (3, 8, 8))
    for layer in (0, 1, 2):
        child = M.net2wider(net, layer, 6, rng=np.random.default_rng(layer), noise=False)
        assert rel_err(net, child) < TOL
    deeper = M.net2deeper(net, 0, 2)
    assert deeper.arch.layers[3] == Conv(8, 3, 1)
    assert rel_err(net, deeper) < TOL
    assert rel_err(net, M.net2wider(deeper, 0, 4, noise=False)) < TOL


@pytest.mark.parametrize(
    ("arch", "src", "dst", "mode", "match"),
    [
        ("C(4,3,1), C(4,3,1), FC(8), SM(3)", 0, 1, "MUL", "mode"),
        ("C(4,3,1), C(4,3,1), FC(8), SM(3)", 0, 7, "ADD", "out of range"),
        ("C(4,3,1), C(4,3,1), FC(8), SM(3)", 1, 0, "ADD", "forward"),
        ("C(4,3,1), C(4,3,1), FC(8), SM(3)", 1, 1, "CAT", "forward"),
        ("C(4,3,1), C(4,3,1), FC(8), SM(3)", 0, 2, "CAT", "convolution layers only"),
        ("C(4,3,1), C(4,3,1), S(0,1,CAT), FC(8), SM(3)", 0, 1, "ADD", "already"),
        ("C(4,3,1), C(6,3,1), FC(8), SM(3)", 0, 1, "ADD", "equal channel"),
        ("C(4,3,1), P(2,2,MAX), C(4,3,1), FC(8), SM(3)", 0, 2, "CAT", "spatial"),
        ("C(4,3,1), C(4,3,1), C(4,3,1), S(1,2,ADD), FC(8), SM(3)", 0, 1, "CAT", "does not fit"),
    ],
)
def test_add_skip_refuses(arch, src, dst, mode, match):
    net = make(arch, (1, 8, 8))
    with pytest.raises(ValueError, match=match):
        M.add_skip(net, src, dst, mode)
    assert (src, dst, mode) not in M.skip_candidates(net.arch, net.input_shape)


# ----------------------------------------------------------------- noise
def test_noise_changes_outputs():
    net = make("C(4,3,1), C(4,3,1), P(2,2,MAX), FC(8), SM(3)", (3, 8, 8))
    rng = np.random.default_rng(0)
    assert rel_err(net, M.net2wider(net, 0, 8, rng=rng)) > 1e-6
    assert rel_err(net, M.net2wider(net, 3, 16, rng=rng)) > 1e-6
    assert rel_err(net, M.net2deeper(net, 0, 0, rng=rng, noise=True, noise_scale=1e-2)) > 1e-6
    dense = make(DENSE_SMALL, (3, 8, 8))
    assert rel_err(dense, M.dense_widen(dense, 1, 6, rng=rng, noise_scale=0.1)) > 1e-6
    assert rel_err(dense, M.dense_insert(dense, 0, 1, rng=rng, noise=True)) > 1e-6


def test_rng_none_uses_fresh_generator():
    net = make("C(4,3,1), FC(8), SM(3)", (1, 8, 8))
    child = M.net2wider(net, 0, 8, noise=False)
    assert rel_err(net, child) < TOL


# ----------------------------------------------------------------- properties
# EAS_HYPOTHESIS_EXAMPLES=300 pytest ... runs a deeper sweep than the fast default
EXAMPLES = int(os.environ.get("EAS_HYPOTHESIS_EXAMPLES", "30"))
PROP = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@PROP
@given(spec=plain_archs(), seed=st.integers(0, 2**31 - 1), skips=st.integers(0, 3))
def test_random_plain_action_is_exact(spec, seed, skips):
    arch, shape = spec
    rng = np.random.default_rng(seed)
    net = randomize(add_random_skips(build_network(arch, shape, seed=0), rng, skips), seed)
    acts = legal_actions(net, SMALL, ("wider", "deeper", "skip"))
    assume(acts)
    kind = sorted(acts)[int(rng.integers(len(acts)))]
    action = acts[kind][int(rng.integers(len(acts[kind])))]
    snap = snapshot(net)
    child = apply_action(net, kind, action, SMALL, rng)
    assert rel_err(net, child) < TOL, (str(net.arch), kind, action)
    check_child(child)
    assert_unchanged(net, snap, net.arch)


@PROP
@given(spec=dense_archs(), seed=st.integers(0, 2**31 - 1))
def test_random_dense_action_is_exact(spec, seed):
    arch, shape = spec
    rng = np.random.default_rng(seed)
    net = make(arch, shape, seed % 1000)
    acts = legal_actions(net, SMALL, ("wider", "insert"))
    assume(acts)
    kind = sorted(acts)[int(rng.integers(len(acts)))]
    action = acts[kind][int(rng.integers(len(acts[kind])))]
    child = apply_action(net, kind, action, SMALL, rng)
    assert rel_err(net, child) < TOL, (str(net.arch), kind, action)


def _succeeds(fn) -> bool:
    try:
        fn()
    except ValueError:
        return False
    return True


@settings(max_examples=max(EXAMPLES - 2, 1), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(spec=st.one_of(plain_archs(), dense_archs()), seed=st.integers(0, 2**31 - 1),
       skips=st.integers(0, 3))
def test_legal_masks_agree_with_functions(spec, seed, skips):
    arch, shape = spec
    rng = np.random.default_rng(seed)
    net = add_random_skips(build_network(arch, shape, seed=0), rng, skips).eval()
    a = net.arch
    n = len(a.layers)
    wide = set(M.widenable_layers(a, SMALL))
    for layer in range(-1, n + 1):
        ok = _succeeds(lambda layer=layer: M.net2wider(net, layer, space=SMALL, rng=rng))
        assert ok == (layer in wide), layer
    deep = set(M.deeper_positions(a))
    blocks = a.blocks()
    for b in range(-1, len(blocks) + 1):
        longest = max((len(m) for m in blocks), default=0)
        for p in range(-1, longest + 1):
            ok = _succeeds(lambda b=b, p=p: M.net2deeper(net, b, p))
            assert ok == ((b, p) in deep), (b, p)
    ins = set(M.dense_insert_positions(a))
    dblocks = a.dense_blocks()
    for b in range(-1, len(dblocks) + 1):
        for p in range(-1, max((len(m) for m in dblocks), default=0) + 2):
            ok = _succeeds(lambda b=b, p=p: M.dense_insert(net, b, p, rng=rng))
            assert ok == ((b, p) in ins), (b, p)
    cands = set(M.skip_candidates(a, shape))
    for s in range(n):
        for d in range(n):
            for mode in ("ADD", "CAT"):
                ok = _succeeds(lambda s=s, d=d, mode=mode: M.add_skip(net, s, d, mode))
                assert ok == ((s, d, mode) in cands), (s, d, mode)
