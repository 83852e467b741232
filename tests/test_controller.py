"""Tests of the EAS meta-controller (agents/controller.py) and REINFORCE (agents/reinforce.py).

Observations are built here without the environment: :func:`make_obs` produces
the SPEC observation dict of an architecture string with hand-made masks, and
:func:`apply` is a tiny architecture-only transition (no weights), so the
learning test runs entirely on a cheap synthetic reward.
"""

from __future__ import annotations

import io
import math
import time

import numpy as np
import pytest
import torch

from eas import FC, Architecture, Conv, SearchSpace, Tokenizer
from eas.agents.base import AgentContext
from eas.agents.controller import Controller, batch_observation
from eas.agents.reinforce import ReinforceAgent
from eas.agents.reinforce_config import ReinforceConfig, baseline_step
from eas.envs.record import EvalResult

SPACE = SearchSpace()
TOK = Tokenizer(SPACE)
L = 20  # max_layers in these tests (the env's default is 50)
K = len(SPACE.kernel_sizes)
KINDS = ("wider", "deeper", "skip")
SCHEDULE = ("wider",) * 4 + ("deeper",) * 5
START = (
    "C(16,3,1), P(2,2,MAX), C(32,3,1), P(2,2,MAX), C(64,3,1), P(2,2,MAX), "
    "C(128,3,1), P(3,3,AVG), FC(256), SM(10)"
)


# ---------------------------------------------------------------- helpers
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny LSTMs: much faster on 1 thread


def make_ctx(seed: int = 0, schedule: tuple[str, ...] | None = SCHEDULE,
             children: int = 10) -> AgentContext:
    """An AgentContext matching the observations of :func:`make_obs`."""
    return AgentContext(
        max_layers=L,
        vocab_size=TOK.vocab_size,
        kernel_sizes=SPACE.kernel_sizes,
        kinds=KINDS,
        schedule=schedule,
        steps_per_episode=len(schedule) if schedule else 5,
        children_per_round=children,
        seed=seed,
    )


def make_obs(arch: str | Architecture, kind: str | None = "wider", step: int = 0,
             kernel_mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The SPEC observation (unbatched) of ``arch``; ``kind=None`` = free mode.

    Masks: conv/FC layers below the widest level may be widened; Net2Deeper may
    insert after any conv/FC layer of a block (position = index in the block),
    an FC after an FC layer; skips join two conv layers of the same block.
    """
    a = Architecture.parse(arch)
    n = len(a.layers) - 1
    wider = np.zeros(L, np.int8)
    deeper = np.zeros((L, L + 1), np.int8)
    is_fc = np.zeros((L, L + 1), np.int8)
    skip = np.zeros((L, L, 2), np.int8)
    for i, layer in enumerate(a.layers[:-1]):
        if isinstance(layer, (Conv, FC)) and SPACE.next_width(layer) is not None:
            wider[i] = 1
    if n < L:
        for b, members in enumerate(a.blocks()):
            for p, i in enumerate(members):
                if isinstance(a.layers[i], (Conv, FC)):
                    deeper[b, p] = 1
                    is_fc[b, p] = isinstance(a.layers[i], FC)
            convs = [i for i in members if isinstance(a.layers[i], Conv)]
            for x in convs:
                for y in convs:
                    if x < y:
                        skip[x, y, :] = 1
    kmask = np.ones(K, np.int8) if kernel_mask is None else np.asarray(kernel_mask, np.int8)
    if kind is None:
        kind_mask = np.array([wider.any(), deeper.any(), skip.any()], np.int8)
    else:
        kind_mask = np.zeros(3, np.int8)
        kind_mask[KINDS.index(kind)] = 1
    return {
        "arch": str(a),
        "tokens": np.array(TOK.encode(a, max_len=L), np.int64),
        "length": np.int64(n),
        "step": np.int64(step),
        "kind_mask": kind_mask,
        "wider_mask": wider,
        "deeper_mask": deeper,
        "deeper_is_fc": is_fc,
        "kernel_mask": kmask,
        "skip_mask": skip,
    }


def stack(observations: list[dict]) -> dict:
    """Batch observations the way a gymnasium VectorEnv does."""
    out = {k: np.stack([o[k] for o in observations]) for k in observations[0] if k != "arch"}
    out["arch"] = tuple(o["arch"] for o in observations)
    return out


def apply(arch: Architecture, kind: str, action: dict[str, np.ndarray]) -> Architecture:
    """Architecture-only Net2Wider / Net2Deeper (what the env does, minus the weights)."""
    if kind == "wider":
        for i in np.flatnonzero(action["wider"]):
            layer = arch.layers[i]
            w = SPACE.next_width(layer)
            new = Conv(w, layer.kernel, layer.stride) if isinstance(layer, Conv) else FC(w)
            arch = arch.replace_layer(int(i), new)
        return arch
    block, pos, k = (int(v) for v in action["deeper"])
    i = arch.blocks()[block][pos]
    layer = arch.layers[i]
    if isinstance(layer, FC):
        return arch.insert_layer(i + 1, FC(layer.units))
    new = Conv(layer.filters, SPACE.kernel_sizes[k], 1)
    return arch.insert_layer(i + 1, new)


def synthetic_score(arch: Architecture, kind: str, action: dict[str, np.ndarray]) -> float:
    """Accuracy gain of one step.

    Widening a layer of the first two blocks gains 0.03, any other layer loses
    0.03; inserting into block 2 gains 0.04, plus 0.03 with a 5x5 kernel. From
    0.3, the best episode (4 wider + 5 deeper steps) reaches 0.89 (reward 5.73).
    """
    if kind == "wider":
        early = set(arch.blocks()[0]) | set(arch.blocks()[1])
        widened = set(np.flatnonzero(action["wider"]).tolist())
        return 0.03 * len(widened & early) - 0.03 * len(widened - early)
    block, _, k = (int(v) for v in action["deeper"])
    return 0.04 * (block == 2) + 0.03 * (block == 2 and SPACE.kernel_sizes[k] == 5)


def reward_of(acc: float) -> float:
    """The EAS reward tan(acc * pi / 2)."""
    return math.tan(min(max(acc, 0.0), 0.999) * math.pi / 2)


def run_round(agent, n: int) -> tuple[list[EvalResult], list[float]]:
    """One controller step: n synthetic episodes in lockstep (4 wider, 5 deeper)."""
    archs = [Architecture.parse(START)] * n
    accs = [0.3] * n
    for step, kind in enumerate(SCHEDULE):
        obs = stack([make_obs(a, kind, step) for a in archs])
        actions = agent.propose(obs)
        for j in range(n):
            act = {k: v[j] for k, v in actions.items()}
            accs[j] += synthetic_score(archs[j], kind, act)
            archs[j] = apply(archs[j], kind, act)
    rewards = [reward_of(a) for a in accs]
    results = [EvalResult(arch=str(a), accuracy=acc, reward=r)
               for a, acc, r in zip(archs, accs, rewards)]
    return results, rewards


class UniformAgent:
    """Random sampling: widen each legal layer w.p. 1/2, uniform legal block/position/kernel."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def propose(self, obs: dict) -> dict[str, np.ndarray]:
        o = batch_observation(obs)
        b = o["tokens"].shape[0]
        wider = (self.rng.random((b, L)) < 0.5) & o["wider_mask"].numpy()
        deeper = np.zeros((b, 3), np.int64)
        for j in range(b):
            legal = np.argwhere(o["deeper_mask"][j].numpy())
            if len(legal):
                blocks = np.unique(legal[:, 0])
                blk = self.rng.choice(blocks)
                pos = self.rng.choice(legal[legal[:, 0] == blk, 1])
                deeper[j] = (blk, pos, self.rng.integers(K))
        return {"kind": np.zeros(b, np.int64), "wider": wider.astype(np.int8),
                "deeper": deeper, "skip": np.zeros((b, 3), np.int64)}


def controller(seed: int = 0) -> Controller:
    torch.manual_seed(seed)
    return Controller(TOK.vocab_size, L, K)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


VARIED = [
    START,
    "C(16,3,1), C(32,5,1), P(2,2,MAX), C(512,3,1), P(2,2,MAX), FC(1024), FC(64), SM(10)",
    "C(64,1,1), P(2,2,MAX), C(64,3,1), C(64,3,1), C(96,3,1), P(7,7,AVG), SM(10)",
]


# ------------------------------------------------------------- controller
def test_shapes_and_dtypes() -> None:
    net = controller()
    obs = stack([make_obs(a, kind) for a in VARIED for kind in ("wider", "deeper")])
    out = net.act(obs, gen())
    b = len(VARIED) * 2
    assert out.actions["kind"].shape == (b,)
    assert out.actions["wider"].shape == (b, L)
    assert out.actions["deeper"].shape == (b, 3)
    assert out.actions["skip"].shape == (b, 3)
    assert out.log_prob.shape == (b,) and out.entropy.shape == (b,)
    assert torch.isfinite(out.log_prob).all() and (out.log_prob <= 0).all()
    assert (out.entropy >= 0).all()
    assert out.log_prob.requires_grad
    # schedule mode: the one-hot kind mask fixes the kind
    np.testing.assert_array_equal(out.actions["kind"], [0, 1] * len(VARIED))
    # unbatched observation works too
    single = net.act(make_obs(START, "deeper"), gen())
    assert single.actions["deeper"].shape == (1, 3)


def test_masks_respected_over_many_samples() -> None:
    net = controller(1)
    g = gen(1)
    kmask = np.array([1, 0, 1], np.int8)  # kernel 3 forbidden
    for arch in VARIED:
        for kind in ("wider", "deeper"):
            o = make_obs(arch, kind, kernel_mask=kmask)
            obs = stack([o] * 400)
            out = net.act(obs, g)
            a = out.actions
            if kind == "wider":
                assert not (a["wider"].astype(bool) & ~o["wider_mask"].astype(bool)).any()
                # every legal layer gets widened sometimes (probabilities are near 1/2)
                legal = o["wider_mask"].astype(bool)
                assert a["wider"][:, legal].any(0).all()
                np.testing.assert_array_equal(a["deeper"], 0)
            else:
                assert not a["wider"].any()
                blk, pos, ker = a["deeper"].T
                assert o["deeper_mask"][blk, pos].all()
                fc = o["deeper_is_fc"][blk, pos].astype(bool)
                assert (ker[~fc] != 1).all() and set(ker[~fc].tolist()) <= {0, 2}
                assert (ker[fc] == 0).all()
                # all legal blocks are explored
                legal_blocks = set(np.flatnonzero(o["deeper_mask"].any(1)).tolist())
                assert set(blk.tolist()) == legal_blocks


def test_widen_mask_zero_probability_and_no_logprob() -> None:
    net = controller(2)
    o = make_obs(VARIED[1], "wider")  # C(512,...) and FC(1024) are at the top level
    assert o["wider_mask"][3] == 0 and o["wider_mask"][5] == 0
    p = net.widen_probabilities(o)[0]
    assert p[3] == 0 and p[5] == 0 and p[o["length"]:].eq(0).all()
    assert (p[o["wider_mask"].astype(bool)] > 0).all()
    # the log-prob only counts unmasked layers: flipping a masked layer's "action" is
    # rejected only by the mask, i.e. it does not change the score
    acts = {"kind": np.array([0]), "wider": o["wider_mask"][None].copy(),
            "deeper": np.zeros((1, 3)), "skip": np.zeros((1, 3))}
    lp_all = net.evaluate(o, acts).log_prob
    expected = torch.log(p[o["wider_mask"].astype(bool)]).sum()
    assert torch.allclose(lp_all, expected, atol=1e-5)


def test_no_kernel_decision_when_inserting_fc() -> None:
    net = controller(3)
    arch = "C(16,3,1), P(2,2,MAX), C(32,3,1), P(7,7,AVG), FC(256), SM(10)"
    o = make_obs(arch, "deeper")
    fc_block = 2
    assert o["deeper_is_fc"][fc_block, 0] == 1 and o["deeper_is_fc"][0, 0] == 0

    def score(block: int, kernel: int) -> tuple[float, float]:
        acts = {"kind": np.array([1]), "wider": np.zeros((1, L)),
                "deeper": np.array([[block, 0, kernel]]), "skip": np.zeros((1, 3))}
        out = net.evaluate(o, acts)
        return float(out.log_prob.detach()[0]), out.stats["deeper_kernel_entropy"][1]

    lp_fc = [score(fc_block, k) for k in range(K)]
    lp_conv = [score(0, k) for k in range(K)]
    assert all(x == lp_fc[0] for x in lp_fc) and lp_fc[0][1] == 0  # no kernel decision
    assert len({x[0] for x in lp_conv}) == K and lp_conv[0][1] == 1  # kernel decided


def test_sampled_logprob_equals_rescored_logprob() -> None:
    net = controller(4)
    for kind in ("wider", "deeper", None):
        obs = stack([make_obs(a, kind) for a in VARIED] * 4)
        out = net.act(obs, gen(5))
        again = net.evaluate(obs, out.actions)
        assert torch.allclose(out.log_prob, again.log_prob, atol=1e-6)
        assert torch.allclose(out.entropy, again.entropy, atol=1e-6)


def test_wider_one_widens_one_legal_layer_and_rescores() -> None:
    net = controller(4)
    net.wider_one = True
    obs = stack([make_obs(a, "wider") for a in VARIED] * 20)
    out = net.act(obs, gen(7))
    w = out.actions["wider"].astype(bool)
    assert (w.sum(-1) == 1).all()  # exactly one layer per child
    assert not (w & ~np.asarray(obs["wider_mask"]).astype(bool)).any()
    assert len(set(np.flatnonzero(w[0::3].any(0)).tolist())) > 1  # not always the same
    again = net.evaluate(obs, out.actions)
    assert torch.allclose(out.log_prob, again.log_prob, atol=1e-6)
    z = net.wider_head(net.encode(torch.as_tensor(obs["tokens"][:1]),
                                  torch.as_tensor(obs["length"][:1]))[0]).squeeze(-1)[0]
    legal = torch.as_tensor(obs["wider_mask"][0]).bool()
    expected = torch.log_softmax(z[legal], -1)[int(np.flatnonzero(w[0][legal.numpy()])[0])]
    assert float(out.log_prob[0]) == pytest.approx(float(expected), abs=1e-5)


def test_free_mode_kind_and_skip() -> None:
    net = controller(6)
    o = make_obs(VARIED[2], None)  # the 3-conv block allows skips
    assert o["kind_mask"].tolist() == [1, 1, 1]
    out = net.act(stack([o] * 300), gen(6))
    kinds = out.actions["kind"]
    assert set(kinds.tolist()) == {0, 1, 2}
    sk = out.actions["skip"][kinds == 2]
    assert o["skip_mask"][sk[:, 0], sk[:, 1], sk[:, 2]].all()
    assert set(sk[:, 2].tolist()) == {0, 1}
    np.testing.assert_array_equal(out.actions["skip"][kinds != 2], 0)
    # a kind ruled out by the mask is never chosen
    o2 = dict(o, kind_mask=np.array([1, 0, 1], np.int8))
    assert 1 not in net.act(stack([o2] * 200), gen(7)).actions["kind"]
    # free mode has a kind decision: its log-prob is part of the total
    assert out.stats["kind_entropy"][1] == 300


def test_illegal_actions_are_rejected_when_rescoring() -> None:
    net = controller()
    o = make_obs(START, "deeper")
    acts = {"kind": np.array([1]), "wider": np.zeros((1, L)),
            "deeper": np.array([[7, 0, 0]]), "skip": np.zeros((1, 3))}  # block 7 does not exist
    with pytest.raises(ValueError, match="illegal"):
        net.evaluate(o, acts)


def test_packing_ignores_padding() -> None:
    net = controller(7)
    a = Architecture.parse(VARIED[1])
    ids = TOK.encode(a)
    n = len(ids)
    short = torch.tensor([ids + [0] * (L - n)])
    long = torch.tensor([ids + [0] * (3 * L - n)])
    garbage = short.clone()
    garbage[0, n:] = torch.randint(2, TOK.vocab_size, (L - n,))
    length = torch.tensor([n])
    with torch.no_grad():
        o1, (h1, c1) = net.encode(short, length)
        o2, (h2, c2) = net.encode(long, length)
        o3, (h3, c3) = net.encode(garbage, length)
    torch.testing.assert_close(o1[:, :n], o2[:, :n])
    torch.testing.assert_close(o1, o3)
    assert o1[:, n:].abs().sum() == 0 and o2[:, n:].abs().sum() == 0
    torch.testing.assert_close(h1, h2)
    torch.testing.assert_close(c1, c3)
    # and a batch with mixed lengths gives each row what it gets alone
    other = torch.tensor([TOK.encode(START, max_len=L)])
    both = torch.cat([short, other])
    lens = torch.tensor([n, len(TOK.encode(START))])
    with torch.no_grad():
        ob, (hb, _) = net.encode(both, lens)
        oo, (ho, _) = net.encode(other, lens[1:])
    torch.testing.assert_close(ob[1:], oo)
    torch.testing.assert_close(hb[:1], h1)
    torch.testing.assert_close(hb[1:], ho)


# ---------------------------------------------------------------- REINFORCE
def test_config_defaults_and_validation() -> None:
    cfg = ReinforceAgent.Config(mode="paper").resolved()
    assert (cfg.lr, cfg.baseline_decay, cfg.baseline_mode, cfg.entropy_coef) == (
        2e-3, 0.95, "ema", 1e-5)
    assert (cfg.embed_dim, cfg.hidden_size, cfg.decoder_hidden) == (16, 50, 100)
    assert ReinforceAgent.Config is ReinforceConfig and ReinforceAgent.name == "reinforce"
    with pytest.raises(ValueError, match="baseline_mode"):
        ReinforceConfig(mode="paper", baseline_mode="mean")
    agent = ReinforceAgent(make_ctx(), ReinforceAgent.Config(hidden_size=8, decoder_hidden=12))
    assert agent.controller.encoder.hidden_size == 8
    assert agent.controller.decoder.hidden_size == 12


def test_baseline_modes() -> None:
    adv, b = baseline_step("ema", None, [1.0, 3.0], 0.95)
    np.testing.assert_allclose(adv, [-1.0, 1.0])
    assert b == pytest.approx(2.0)
    # ema: subtract the previous baseline, then update it
    adv, b2 = baseline_step("ema", b, [5.0, 7.0], 0.95)
    np.testing.assert_allclose(adv, [3.0, 5.0])
    assert b2 == pytest.approx(0.95 * 2.0 + 0.05 * 6.0)
    # batch (EAS code): move 95% of the way to the batch mean, then subtract
    adv, b3 = baseline_step("batch", 2.0, [5.0, 7.0], 0.95)
    assert b3 == pytest.approx(2.0 + 0.95 * 4.0)
    np.testing.assert_allclose(adv, [5.0 - 5.8, 7.0 - 5.8])
    # and the agent uses them
    for mode, expected in (("ema", 2.2), ("batch", 5.8)):
        agent = ReinforceAgent(make_ctx(children=2), ReinforceConfig(mode="paper", baseline_mode=mode,
                                                                      baseline_init=2.0))
        obs = stack([make_obs(START, "wider")] * 2)
        agent.propose(obs)
        m = agent.learn([EvalResult(0.9, arch="a", reward=5.0), EvalResult(0.9, arch="b", reward=7.0)])
        assert m["charts/baseline"] == pytest.approx(expected)
        assert agent.baseline == pytest.approx(expected)


def test_parent_baseline_subtracts_each_childs_start() -> None:
    adv, b = baseline_step("parent", None, [5.0, 7.0, 9.0], 0.95, parents=[4.0, None, 9.5])
    # child 1's start is unknown: leave-one-out (mean of the others, 7.0)
    np.testing.assert_allclose(adv, [1.0, 0.0, -0.5])
    assert b == pytest.approx(7.0)
    with pytest.raises(ValueError, match="parents"):
        baseline_step("parent", None, [1.0, 2.0], 0.95, parents=[1.0])
    # the agent: without a pool every child's parent is the stage start
    agent = ReinforceAgent(make_ctx(children=2), ReinforceConfig(mode="paper",
                                                                  baseline_mode="parent"))
    agent.set_start_accuracy(0.5)  # reward tan(pi/4) = 1
    assert agent._parent_rewards(2) == pytest.approx([1.0, 1.0])


def test_failed_children_get_zero_reward_and_memory_is_cleared() -> None:
    agent = ReinforceAgent(make_ctx(children=3), ReinforceConfig(mode="paper"))
    obs = stack([make_obs(START, "wider")] * 3)
    agent.propose(obs)
    agent.propose(stack([make_obs(START, "deeper")] * 3))
    m = agent.learn([EvalResult(0.5, arch="a", reward=1.0), EvalResult(0.0, arch="b", reward=9.0, failed=True),
                     EvalResult(0.5, arch="c", reward=float("nan"))])
    assert m["charts/mean_reward"] == pytest.approx(1 / 3)
    assert m["charts/best_reward"] == pytest.approx(1.0)
    assert m["charts/episode_steps"] == 2
    assert not agent._memory
    for key in ("losses/policy_loss", "losses/entropy", "charts/baseline", "charts/widen_prob",
                "charts/deeper_block_entropy"):
        assert key in m and math.isfinite(m[key])
    assert 0 < m["charts/widen_prob"] < 1
    agent.propose(obs)
    with pytest.raises(ValueError, match="1 results for an episode of 3"):
        agent.learn([EvalResult(0.5, arch="a", reward=1.0)])


def test_batched_rescoring_equals_per_step_log_probs() -> None:
    """learn() rescores all steps in one pass; it must equal the per-step sampled log-probs."""
    agent = ReinforceAgent(make_ctx(seed=8, children=4), ReinforceConfig(mode="paper"))
    archs = [Architecture.parse(a) for a in VARIED] + [Architecture.parse(START)]
    total = torch.zeros(4)
    for step, kind in enumerate(SCHEDULE):
        obs = stack([make_obs(a, kind, step) for a in archs])
        g_state = agent.generator.get_state()
        actions = agent.propose(obs)
        g = torch.Generator()
        g.set_state(g_state)
        out = agent.controller.act(obs, g)  # replays the very same draws
        for key in actions:
            np.testing.assert_array_equal(out.actions[key], actions[key])
        total += out.log_prob.detach()
        archs = [apply(a, kind, {k: v[j] for k, v in actions.items()}) for j, a in enumerate(archs)]
    log_prob, entropy, stats = agent.episode_log_prob()
    torch.testing.assert_close(log_prob.detach(), total)
    assert log_prob.requires_grad and (entropy > 0).all()
    assert stats["widen_prob"][1] > 0 and stats["deeper_block_entropy"][1] == 4 * 5


def test_learn_changes_weights_in_the_right_direction() -> None:
    """One step with a positive advantage on a single child makes its actions likelier."""
    agent = ReinforceAgent(make_ctx(children=2), ReinforceConfig(mode="paper", lr=1e-2, baseline_init=0.0))
    obs = stack([make_obs(START, "deeper")] * 2)
    acts = agent.propose(obs)
    before = agent.controller.evaluate(obs, acts).log_prob.detach()
    agent.learn([EvalResult(0.9, arch="a", reward=5.0), EvalResult(0.1, arch="b", reward=0.0)])
    after = agent.controller.evaluate(obs, acts).log_prob.detach()
    assert after[0] > before[0]


def test_no_global_rng_use() -> None:
    torch.manual_seed(123)
    np.random.seed(123)
    t_state, n_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    agent = ReinforceAgent(make_ctx(seed=5, children=4), ReinforceConfig(mode="paper"))
    results, _ = run_round(agent, 4)
    agent.learn(results)
    assert torch.equal(torch.get_rng_state(), t_state)
    np.testing.assert_array_equal(np.random.get_state()[1], n_state)
    # same seed -> same weights and same actions; another seed -> different
    a, b, c = (ReinforceAgent(make_ctx(seed=s, children=4), ReinforceConfig(mode="paper")) for s in (5, 5, 6))
    obs = stack([make_obs(x, "deeper") for x in VARIED] + [make_obs(START, "deeper")])
    pa, pb = a.propose(obs), b.propose(obs)
    np.testing.assert_array_equal(pa["deeper"], pb["deeper"])
    assert any(not torch.equal(x, y) for x, y in zip(a.controller.parameters(),
                                                         c.controller.parameters()))


def test_checkpoint_round_trip_restores_next_actions() -> None:
    ctx = make_ctx(seed=11, children=6)
    a = ReinforceAgent(ctx, ReinforceConfig(mode="paper"))
    for _ in range(2):
        results, _ = run_round(a, 6)
        a.learn(results)
    state = a.state_dict()
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    b = ReinforceAgent(make_ctx(seed=999, children=6), ReinforceConfig(mode="paper"))
    b.load_state_dict(loaded)
    assert b.baseline == a.baseline
    obs = stack([make_obs(x, k) for x in VARIED for k in ("wider", "deeper")])
    for _ in range(3):
        pa, pb = a.propose(obs), b.propose(obs)
        for key in pa:
            np.testing.assert_array_equal(pa[key], pb[key])
    # the optimiser state came along: one identical learning step keeps them equal
    res = [EvalResult(0.5, arch="x", reward=float(r)) for r in range(6)]
    a.learn(res)
    b.learn(res)
    for x, y in zip(a.controller.parameters(), b.controller.parameters()):
        torch.testing.assert_close(x, y)
    # the snapshot is a copy: training a further did not change it
    fresh = ReinforceAgent(make_ctx(seed=999, children=6), ReinforceConfig(mode="paper"))
    fresh.load_state_dict(state)
    assert not all(torch.equal(x, y) for x, y in zip(a.controller.parameters(),
                                                         fresh.controller.parameters()))


def random_mean(rounds: int, n: int, seed: int = 0) -> float:
    agent = UniformAgent(seed)
    return float(np.mean([np.mean(run_round(agent, n)[1]) for _ in range(rounds)]))


def train(rounds: int, seed: int, **cfg) -> list[float]:
    agent = ReinforceAgent(make_ctx(seed=seed), ReinforceConfig(mode="paper", **cfg))
    curve = []
    for _ in range(rounds):
        results, rewards = run_round(agent, 10)
        m = agent.learn(results)
        curve.append(m["charts/mean_reward"])
        assert m["charts/mean_reward"] == pytest.approx(np.mean(rewards))
    return curve


def test_controller_learns_fast() -> None:
    """A short run (40 controller steps of 10 episodes) already beats random sampling."""
    t0 = time.perf_counter()
    curve = train(40, seed=0, lr=6e-3)
    rand = random_mean(20, 10)
    first, last = np.mean(curve[:10]), np.mean(curve[-10:])
    print(f"fast: first10={first:.3f} last10={last:.3f} random={rand:.3f} "
          f"({time.perf_counter() - t0:.1f}s)")
    assert last > first + 1.0
    assert last > 2 * rand


@pytest.mark.slow
def test_controller_learns_with_paper_settings() -> None:
    """200 controller steps of 10 episodes at the EAS learning rate 2e-3."""
    curve = train(200, seed=1)
    rand = random_mean(50, 10, seed=1)
    first, last = np.mean(curve[:20]), np.mean(curve[-20:])
    print(f"slow: first20={first:.3f} last20={last:.3f} random={rand:.3f}")
    assert last > first + 2.0
    assert last > 3 * rand


# ------------------------------------------------------------ with the real env
@pytest.mark.parametrize("mode", ["paper", "pool"])
@pytest.mark.parametrize("schedule", [("wider", "deeper", "wider", "deeper"), None],
                         ids=["schedule", "free"])
def test_agent_drives_the_real_environment(schedule: tuple[str, ...] | None, mode: str) -> None:
    """Every action the agent proposes is legal for NetTransformEnv; learning runs."""
    envs = pytest.importorskip("eas.envs")
    space = SearchSpace(filters=(16, 20, 24, 32, 40, 48, 64), fc_units=(256, 288, 320))

    def evaluator(net: torch.nn.Module) -> float:  # cheap stand-in for training
        return min(0.99, sum(p.numel() for p in net.parameters()) / 2e5)

    n = 3
    venv = envs.VectorNetTransformEnv(n, evaluator=evaluator, space=space, schedule=schedule,
                                      free_steps=4, noise=False)
    ctx = AgentContext(max_layers=50, vocab_size=Tokenizer(space).vocab_size,
                       kernel_sizes=space.kernel_sizes, kinds=tuple(envs.KINDS),
                       schedule=schedule, steps_per_episode=4, children_per_round=n, seed=3,
                       extra={"space": space})
    agent = ReinforceAgent(ctx, ReinforceConfig(mode=mode))
    for r in range(2):
        obs, _ = venv.reset(seed=r)
        steps = 0
        while True:
            obs, reward, term, trunc, infos = venv.step(agent.propose(obs))
            steps += 1
            if np.all(term):
                break
        assert steps == 4
        finals = infos["final"]
        results = [EvalResult(arch=f["arch"], accuracy=f["accuracy"], reward=float(rw),
                               failed=bool(f["failed"])) for f, rw in zip(finals, reward)]
        m = agent.learn(results)
        assert all(math.isfinite(v) for v in m.values())
        assert m["charts/mean_reward"] > 0
    venv.close()
