"""The fast legal actions (morphisms.legal) against the reference implementation.

The reference (``tests/legal_reference.py``) is the previous code path: every
candidate is asked of the transformation's own ``*_refusal`` function (which,
for skips, builds the new architecture and infers its shapes). The masks the
environment builds from :class:`LegalActions` must be identical to the masks
the reference gives, on many random seeded networks (plain with ADD/CAT skips,
and DenseNets), for several ``max_layers`` and step kinds.
"""

from __future__ import annotations

import numpy as np
import pytest
from legal_reference import ref_deeper, ref_dense_insert, ref_masks, ref_skips, ref_widenable

from eas.arch import Architecture, SearchSpace, densenet_bc
from eas.envs import NetTransformEnv
from eas.envs.spaces import Masks
from eas.layers import Conv, Skip
from eas.morphisms import legal

SHAPE = (3, 16, 16)
SPACE = SearchSpace()


# ------------------------------------------------------------- random architectures
def random_plain(rng: np.random.Generator) -> Architecture:
    """A random plain CNN for 16x16 inputs with random ADD/CAT skips (seeded)."""
    tokens: list[str] = []
    for stage in range(int(rng.integers(1, 4))):
        for _ in range(int(rng.integers(1, 6))):
            width = int(rng.choice([16, 16, 32, 512]))
            kernel = int(rng.choice([1, 3, 5]))
            stride = 2 if rng.random() < 0.08 else 1
            tokens.append(f"C({width},{kernel},{stride})")
        if stage < 2 or rng.random() < 0.5:
            tokens.append(f"P(2,2,{rng.choice(['MAX', 'AVG'])})")
    tokens += [f"FC({int(rng.choice([64, 128, 1024]))})" for _ in range(int(rng.integers(0, 3)))]
    tokens.append("SM(10)")
    arch = Architecture.parse(", ".join(tokens))
    for _ in range(int(rng.integers(0, 7))):
        cands = ref_skips(arch, SHAPE)
        if not cands:
            break
        s, d, m = cands[int(rng.integers(len(cands)))]
        arch = arch.add_skip(Skip(s, d, m))
    return arch


def random_dense(rng: np.random.Generator) -> Architecture:
    """A random DenseNet-like architecture (some with blocks fed by negative channels)."""
    choice = int(rng.integers(4))
    if choice == 0:
        return densenet_bc(int(rng.choice([10, 16])), int(rng.choice([12, 40, 64])),
                           spatial=16)
    g = int(rng.choice([12, 40, 64]))
    bott = int(rng.choice([0, 4 * g]))
    dl = f"DL({g},3,{bott})"
    n = int(rng.integers(1, 4))
    if choice == 1:  # the first dense block reads the image directly
        body = [dl] * n + ["C(16,1,1)", "P(2,2,AVG)"] + [dl] * n
    elif choice == 2:  # an ADD skip right before the first dense block
        body = ["C(16,3,1)", "C(16,3,1)", "S(0,1,ADD)"] + [dl] * n + ["P(2,2,AVG)"] + [dl] * n
    else:
        body = ["C(32,3,1)"] + [dl] * n + ["C(32,1,1)", "C(32,1,1)", f"S({n + 1},{n + 2},CAT)",
                                           "P(2,2,AVG)"]
    return Architecture.parse(", ".join(body + ["P(8,8,AVG)", "SM(10)"]))


ARCHS = ([random_plain(np.random.default_rng(seed)) for seed in range(60)]
         + [random_dense(np.random.default_rng(1000 + seed)) for seed in range(16)])


# ---------------------------------------------------------------------- the tests
@pytest.mark.parametrize("index", range(len(ARCHS)))
def test_legal_sets_equal_the_reference(index: int) -> None:
    arch = ARCHS[index]
    assert legal.widenable_layers(arch, SPACE) == ref_widenable(arch, SPACE)
    assert legal.deeper_positions(arch) == ref_deeper(arch)
    assert legal.dense_insert_positions(arch) == ref_dense_insert(arch)
    assert legal.skip_candidates(arch, SHAPE) == ref_skips(arch, SHAPE)


@pytest.mark.parametrize("index", range(len(ARCHS)))
def test_mask_arrays_equal_the_reference(index: int) -> None:
    arch = ARCHS[index]
    n = len(arch.layers) - 1
    for L in sorted({max(n - 3, 1), n, n + 1, 50}):
        for step_kind, done in ((None, False), ("wider", False), ("skip", False), (None, True)):
            want = ref_masks(arch, SHAPE, SPACE, L, step_kind, done)
            got = Masks(legal.legal_actions(arch, SHAPE, SPACE, L), step_kind, done).arrays()
            assert set(got) == set(want)
            for key in want:
                assert got[key].dtype == want[key].dtype, (str(arch), L, key)
                np.testing.assert_array_equal(got[key], want[key], err_msg=f"{arch} L={L} {key}")


def test_random_networks_cover_skips_and_refusals() -> None:
    """The random set exercises what the fast path derives (else the equality says little)."""
    plain = [a for a in ARCHS if not a.is_densenet]
    assert sum(any(s.mode == "ADD" for s in a.skips) for a in plain) >= 10
    assert sum(any(s.mode == "CAT" for s in a.skips) for a in plain) >= 10
    # some legal skips are refused for channel reasons, some deeper positions too
    assert any(len(ref_skips(a, SHAPE)) < 2 * sum(
        1 for s in range(len(a.layers)) for d in range(s + 1, len(a.layers))
        if isinstance(a.layers[s], Conv) and isinstance(a.layers[d], Conv)) for a in plain)
    assert any(len(ref_deeper(a)) < sum(len(b) for b in a.blocks()) for a in plain)
    dense = [a for a in ARCHS if a.is_densenet]
    assert any(ref_dense_insert(a) and ref_dense_insert(a)[0][1] != 0 for a in dense)


def test_fashion_mnist_unfit_network_has_no_skips() -> None:
    arch = Architecture.parse("C(16,3,1), P(2,2,MAX), C(16,3,1), SM(10)")
    assert legal.skip_candidates(arch, (1, 1, 1)) == ref_skips(arch, (1, 1, 1)) == []


def test_legal_actions_is_cached_per_architecture_and_lazy() -> None:
    arch = ARCHS[3]
    one = legal.legal_actions(arch, SHAPE, SPACE, 50)
    assert legal.legal_actions(Architecture.parse(str(arch)), SHAPE, SPACE, 50) is one
    assert legal.legal_actions(arch, SHAPE, SPACE, 40) is not one
    fresh = legal.LegalActions(arch, SHAPE, SPACE, 50)
    assert "skips" not in fresh.__dict__
    assert fresh.wider == one.wider and "skips" not in fresh.__dict__
    assert fresh.skips == one.skips and "skips" in fresh.__dict__
    with pytest.raises(ValueError, match="unknown kind"):
        fresh.has("shallower")


def test_wider_fc_names_the_fc_layers() -> None:
    arch = Architecture.parse("C(16,3,1), P(2,2,MAX), FC(64), FC(1024), SM(10)")
    acts = legal.LegalActions(arch, SHAPE, SPACE, 50)
    assert acts.wider == (0, 2) and acts.wider_fc == frozenset({2})
    assert acts.deeper_fc == frozenset({(1, 0), (1, 1)})


def test_env_masks_match_reference_along_random_episodes() -> None:
    """Free-mode episodes of random legal actions: every observation's masks as before."""
    start = Architecture.parse("C(16,3,1), C(16,3,1), P(2,2,MAX), C(32,3,1), P(2,2,MAX), "
                               "FC(64), SM(10)")
    env = NetTransformEnv(start, input_shape=SHAPE, schedule=None, free_steps=8, max_layers=14,
                          evaluator=lambda net: 0.5, noise=False, cache=False)
    env.action_space.seed(7)
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        done = False
        while not done:
            arch = Architecture.parse(obs["arch"])
            want = ref_masks(arch, SHAPE, env.space, 14, None, int(obs["step"]) >= 8)
            for key, value in want.items():
                np.testing.assert_array_equal(obs[key], value, err_msg=key)
            obs, _, done, _, _ = env.step(env.action_space.sample())
