"""CUDA-graph child training (eas.graphed.StepRunner through train_child), proven on CPU.

On CPU a CUDA graph cannot be captured, so the tests capture with a stand-in
that has a CUDA graph's semantics (:func:`fx_capture`): ``make_fx`` records the
step's aten ops with the very tensors it touches, so a replay reads and
writes the same static buffers, while any host value read during the capture
(a Python float, an ``.item()``) is baked in as a constant, as in a CUDA graph.
The capture executes the step once, so the stand-in puts the state back
afterwards (a CUDA capture executes nothing).

Faults are injected at every stage (warm-up, capture, self-check, replay) and
each must end in an eagerly trained child with a recorded reason and exactly
the result of a plain eager run with that seed. On CUDA (marked ``gpu``,
skipped elsewhere): graph against eager with the cosine schedule, the self-check
on a real graph, and the validation accuracy after a short real run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from test_training import NaNNet, small_cnn, synthetic_data
from torch import nn
from torch.fx.experimental.proxy_tensor import make_fx

from eas import accel, graphed, training
from eas.config.engine import load_config
from eas.data import DEBIAN_DATASET_DIR, AugmentConfig, load_dataset
from eas.network import build_network
from eas.recipe import TrainConfig
from eas.training import train_child

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")


pytestmark = pytest.mark.usefixtures("one_thread")

CFG = TrainConfig(epochs=3, batch_size=32, lr=0.05, cuda_graph_min_steps=0)  # 24 steps, cosine


@pytest.fixture(autouse=True)
def _fresh_verdicts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no cached self-check verdicts."""
    monkeypatch.setattr(graphed, "_VERDICTS", {})


def _data():
    data = synthetic_data(n_train=256, seed=1)
    # crops and flips, so that the pre-drawn augmentation is exercised
    return data.__class__(**{**data.__dict__,
                             "augment": AugmentConfig(crop_padding=1, hflip=True)})


def _dropout_cnn(seed: int = 3) -> nn.Module:
    """small_cnn with dropout: training draws from the global RNG, which a retrain must replay."""
    net = small_cnn(size=8, seed=seed)
    return nn.Sequential(*list(net)[:-1], nn.Dropout(0.2), list(net)[-1])


class FxGraph:
    """A captured step replayed from its recorded ops (see :func:`fx_capture`)."""

    def __init__(self, module: Any) -> None:
        self.module = module
        self.replays = 0

    def replay(self) -> None:
        self.replays += 1
        self.module()


def fx_capture(step: Callable[[], None]) -> FxGraph:
    """CPU stand-in for ``graphed.capture``: record ``step`` (a runner's ``_body``), run nothing."""
    runner = step.__self__  # type: ignore[attr-defined]
    state = runner._state()
    saved = [t.detach().clone() for t in state]
    rng = torch.get_rng_state()
    module = make_fx(lambda: step())()
    with torch.no_grad():
        for t, s in zip(state, saved):
            t.copy_(s)
    torch.set_rng_state(rng)
    runner.optimizer.zero_grad(set_to_none=True)
    return FxGraph(module)


@pytest.fixture
def graph_on_cpu(monkeypatch: pytest.MonkeyPatch) -> list[graphed.StepRunner]:
    """Force the graph path on CPU with the fx stand-in; yields the runners made."""
    monkeypatch.setattr(training, "_graph_steps_wanted", lambda device, config: config.cuda_graph)
    monkeypatch.setattr(graphed, "capture", fx_capture)
    runners: list[graphed.StepRunner] = []
    real_init = graphed.StepRunner.__init__

    def init(self: graphed.StepRunner, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        runners.append(self)

    monkeypatch.setattr(graphed.StepRunner, "__init__", init)
    return runners


def _eager(net_fn: Callable[[], nn.Module] = _dropout_cnn, cfg: TrainConfig = CFG):
    net = net_fn()
    torch.manual_seed(7)  # the global RNG (dropout) as the graphed run will find it
    res = train_child(net, _data(), TrainConfig(**{**cfg.__dict__, "cuda_graph": False}), seed=5)
    return res, net


def _graphed(net_fn: Callable[[], nn.Module] = _dropout_cnn, cfg: TrainConfig = CFG):
    net = net_fn()
    torch.manual_seed(7)
    return train_child(net, _data(), cfg, seed=5), net


def _same_weights(a: nn.Module, b: nn.Module, **tol: float) -> None:
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(x, y, msg=k, **(tol or {"rtol": 0, "atol": 0}))


# ------------------------------------------------------------------------ config
def test_graph_settings_are_config_values() -> None:
    assert TrainConfig().cuda_graph is True and TrainConfig().cuda_graph_min_steps == 200
    cfg = load_config(None, {"child.cuda_graph": "false", "child.cuda_graph_min_steps": "50"})
    assert cfg.child.cuda_graph is False and cfg.child.cuda_graph_min_steps == 50
    with pytest.raises(ValueError, match="cuda_graph_min_steps"):
        TrainConfig(cuda_graph_min_steps=-1)


def test_cpu_uses_the_eager_loop() -> None:
    res = train_child(small_cnn(size=8), _data(), TrainConfig(epochs=1, batch_size=32))
    assert not res.cuda_graph and res.note is None and res.fallback is None
    assert res.precision == "fp32"


def test_no_graph_below_the_minimum_number_of_steps(graph_on_cpu) -> None:
    res, _ = _graphed(cfg=TrainConfig(**{**CFG.__dict__, "cuda_graph_min_steps": 25}))
    assert not graph_on_cpu and not res.cuda_graph and res.note is None


# ------------------------------------------------------- the graph, replayed on CPU
def test_replayed_graph_trains_exactly_like_the_eager_loop(graph_on_cpu) -> None:
    """Cosine schedule, crops, flips, BN, dropout: every value the replay needs is read afresh."""
    eager, eager_net = _eager()
    res, net = _graphed()
    (runner,) = graph_on_cpu
    assert res.cuda_graph and res.note is None and res.fallback is None
    assert runner.checked and graphed.self_check_verdict(runner.family) is True
    assert runner.graph is None  # closed
    assert res.steps == eager.steps == 24
    assert res.train_loss == pytest.approx(eager.train_loss, rel=1e-5)
    assert res.val_accuracy == eager.val_accuracy
    _same_weights(net, eager_net, rtol=1e-5, atol=1e-6)


def test_a_value_baked_in_at_capture_is_caught(graph_on_cpu,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A step that reads the learning rate on the host (frozen at capture) trains differently.

    This is the check the previous test makes; here it must fail. The self-check
    (one replay, at the capture step, where the frozen value is still right) passes.
    """
    real_body = graphed.StepRunner._body

    host_lrs: list[float] = []

    def baked_body(self: graphed.StepRunner) -> None:
        if not host_lrs:
            host_lrs.extend(self.lr_table.tolist())
        table = self.lr_table
        # the rate picked on the host by the host's step count: frozen in a graph
        self.lr_table = torch.full_like(table, host_lrs[self._done])
        try:
            real_body(self)
        finally:
            self.lr_table = table

    monkeypatch.setattr(graphed.StepRunner, "_body", baked_body)
    eager, eager_net = _eager()
    res, net = _graphed()
    assert res.cuda_graph and graph_on_cpu[0].checked
    assert graphed.self_check_verdict(graph_on_cpu[0].family) is True
    with pytest.raises(AssertionError):
        _same_weights(net, eager_net, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ fault injection
def _assert_fell_back(res, net, stage: str, words: str) -> None:
    eager, eager_net = _eager()
    assert not res.failed and not res.cuda_graph
    assert res.fallback == stage
    assert res.note is not None and f"CUDA graph {stage} failed" in res.note
    assert words in res.note and "eager steps from the initial weights" in res.note
    assert res.steps == eager.steps
    assert res.val_accuracy == eager.val_accuracy and res.train_loss == eager.train_loss
    _same_weights(net, eager_net)


def test_warm_up_failure_retrains_eagerly(graph_on_cpu, monkeypatch: pytest.MonkeyPatch) -> None:
    real = graphed.StepRunner._eager
    calls = []

    def eager(self: graphed.StepRunner) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("injected warm-up fault")
        real(self)

    monkeypatch.setattr(graphed.StepRunner, "_eager", eager)
    res, net = _graphed()
    _assert_fell_back(res, net, "warm-up", "injected warm-up fault")


def test_capture_failure_retrains_eagerly(graph_on_cpu, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(step: Callable[[], None]) -> None:
        raise RuntimeError("injected capture fault")

    monkeypatch.setattr(graphed, "capture", fail)
    res, net = _graphed()
    _assert_fell_back(res, net, "capture", "injected capture fault")


@pytest.mark.skipif(CUDA, reason="needs a machine where torch's CUDA-graph calls fail")
def test_real_cuda_capture_on_cpu_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unpatched capture: torch's own CUDA-graph calls raise on this machine."""
    monkeypatch.setattr(training, "_graph_steps_wanted", lambda device, config: config.cuda_graph)
    res, net = _graphed()
    assert res.fallback == "capture" and not res.cuda_graph
    _assert_fell_back(res, net, "capture", "")


def _fault_in_replay(monkeypatch: pytest.MonkeyPatch, fault: Callable[..., None]) -> None:
    """Every graph captured from now on replays as ``fault(graph, step, replay)`` (the real
    replay passed in, to call or not)."""
    def capture(step: Callable[[], None]) -> FxGraph:
        graph = fx_capture(step)
        replay = graph.replay
        graph.replay = lambda: fault(graph, step, replay)  # type: ignore[method-assign]
        return graph

    monkeypatch.setattr(graphed, "capture", capture)


def test_replay_failure_retrains_from_the_initial_weights(
        graph_on_cpu, monkeypatch: pytest.MonkeyPatch) -> None:
    """The replay fails after 10 good replays: the retrain starts afresh, not half-trained."""
    def flaky(graph: FxGraph, step: Callable[[], None], replay: Callable[[], None]) -> None:
        if graph.replays >= 10:
            raise RuntimeError("injected replay fault")
        replay()

    _fault_in_replay(monkeypatch, flaky)
    res, net = _graphed()
    _assert_fell_back(res, net, "replay", "injected replay fault")


def test_self_check_mismatch_retrains_and_is_cached(
        graph_on_cpu, monkeypatch: pytest.MonkeyPatch) -> None:
    """A graph whose replay drifts from the eager step is refused, here and for its family."""
    def drifting(graph: FxGraph, step: Callable[[], None], replay: Callable[[], None]) -> None:
        replay()
        with torch.no_grad():
            next(step.__self__.network.parameters()).mul_(1.01)  # type: ignore[attr-defined]

    _fault_in_replay(monkeypatch, drifting)
    res, net = _graphed()
    _assert_fell_back(res, net, "self-check", "differs from eager (checksum")
    family = graph_on_cpu[0].family
    assert graphed.self_check_verdict(family) is False
    again, net2 = _graphed()  # same family: not captured again
    assert len(graph_on_cpu) == 1 and not again.cuda_graph and again.fallback is None
    assert again.note is not None and "self-check failed earlier" in again.note
    _same_weights(net2, net)


def test_a_passed_self_check_is_not_repeated(graph_on_cpu) -> None:
    first, _ = _graphed()
    second, _ = _graphed()
    assert first.cuda_graph and second.cuda_graph
    assert [r.checked for r in graph_on_cpu] == [True, False]


def test_sticky_cuda_error_is_raised_not_retrained(graph_on_cpu,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    message = "CUDA error: an illegal memory access was encountered"

    def fail(step: Callable[[], None]) -> None:
        raise RuntimeError(message)

    monkeypatch.setattr(graphed, "capture", fail)
    with pytest.raises(RuntimeError, match="illegal memory access"):
        _graphed()


def test_graph_path_still_detects_nan(graph_on_cpu) -> None:
    res = train_child(NaNNet(), synthetic_data(),
                      TrainConfig(epochs=2, batch_size=32, cuda_graph_min_steps=0))
    assert res.failed and res.val_accuracy == 0.0 and "NaN" in (res.reason or "")


# ------------------------------------------------------------- requirements / accel
def test_graph_refused_without_fused_sgd_or_with_fp16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(training, "_graph_steps_wanted", lambda device, config: config.cuda_graph)
    cpu = torch.device("cpu")
    use, why = training._graph_plan(cpu, CFG, 24, "fp16", "x")
    assert not use and "fp16" in (why or "")
    monkeypatch.setattr(training, "SGD_HAS_FUSED", False)
    use, why = training._graph_plan(cpu, CFG, 24, "bf16", "x")
    assert not use and "no fused SGD" in (why or "")
    assert training._graph_plan(cpu, CFG, 24, "bf16", "x")[0] is False


def test_make_optimizer_on_a_torch_without_fused(monkeypatch: pytest.MonkeyPatch) -> None:
    """An SGD without ``fused=`` (torch < 2.3): the eager path never passes it."""
    real = torch.optim.SGD

    def old_sgd(params, lr, momentum=0, dampening=0, weight_decay=0, nesterov=False):
        return real(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                    nesterov=nesterov)

    monkeypatch.setattr(torch.optim, "SGD", old_sgd)
    monkeypatch.setattr(training, "SGD_HAS_FUSED", False)
    opt = training.make_optimizer(small_cnn(size=8), CFG)
    assert opt.param_groups[0]["lr"] == CFG.lr
    with pytest.raises(ValueError, match="fused SGD"):
        training.make_optimizer(small_cnn(size=8), CFG, fused=True)
    res = train_child(small_cnn(size=8), _data(), TrainConfig(epochs=1, batch_size=32))
    assert not res.failed


@pytest.mark.parametrize(("native", "emulated", "want"),
                         [(True, True, "bf16"), (False, True, "fp16"), (False, False, "fp16")])
def test_precision_is_bf16_only_where_native(monkeypatch: pytest.MonkeyPatch, native: bool,
                                             emulated: bool, want: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)

    def is_bf16_supported(including_emulation: bool = True) -> bool:
        return native or (including_emulation and emulated)

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    assert accel.choose_precision(torch.device("cuda"), amp=True) == want
    assert accel.choose_precision(torch.device("cuda"), amp=False) == "fp32"
    assert accel.choose_precision(torch.device("cpu"), amp=True) == "fp32"


@pytest.mark.parametrize(("error", "sticky"), [
    (RuntimeError("CUDA error: an illegal memory access was encountered"), True),
    (RuntimeError("CUDA error: unspecified launch failure"), True),
    (RuntimeError("CUDA error: uncorrectable ECC error encountered"), True),
    ("RuntimeError: CUDA error: misaligned address", True),
    (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), False),
    (RuntimeError("mat1 and mat2 shapes cannot be multiplied"), False),
    (ValueError("illegal memory access (not CUDA)"), False),
    (None, False),
])
def test_sticky_cuda_errors_are_recognised(error: Any, sticky: bool) -> None:
    assert accel.is_sticky_cuda_error(error) is sticky


def test_sticky_cuda_error_found_through_the_cause() -> None:
    try:
        try:
            raise RuntimeError("CUDA error: unspecified launch failure")
        except RuntimeError as inner:
            raise graphed.GraphStepError("replay", "x", inner) from inner
    except graphed.GraphStepError as exc:
        assert accel.is_sticky_cuda_error(exc)


# ----------------------------------------------------------------------------- GPU
def _cuda_data():
    g = torch.Generator().manual_seed(0)
    n = 64 * 200 + 512
    y = torch.randint(0, 10, (n,), generator=g)
    x = torch.randint(0, 255, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    x[:, 0, :8, :8] = (y * 25).to(torch.uint8)[:, None, None]  # learnable signal
    data = synthetic_data()
    return data.__class__(**{**data.__dict__, "train_x": x[:-512], "train_y": y[:-512],
                             "val_x": x[-512:], "val_y": y[-512:], "test_x": x[-512:],
                             "test_y": y[-512:], "num_classes": 10,
                             "mean": torch.full((3,), 0.5), "std": torch.full((3,), 0.29),
                             "augment": AugmentConfig(crop_padding=4, hflip=True)}).to("cuda")


@pytest.mark.gpu
@needs_cuda
def test_graph_loss_curve_matches_eager_under_the_cosine_schedule() -> None:
    """Mean loss of each block of 20 steps (10 blocks = 200 steps), graph vs eager.

    Each run is one child of ``epochs`` x 20 steps with the cosine schedule, so
    the learning rate comes from the graph's lr tensor, changing every step.
    """
    data = _cuda_data()
    curves = {}
    for graph in (False, True):
        curve = []
        for epochs in range(1, 11):
            cfg = TrainConfig(epochs=epochs, max_batches_per_epoch=20, cuda_graph=graph,
                              cuda_graph_min_steps=0, schedule="cosine", lr=0.05)
            res = train_child(small_cnn(in_ch=3, size=32, seed=0), data, cfg, seed=0)
            assert not res.failed and res.cuda_graph is graph, res.note
            curve.append(res.train_loss)
        curves[graph] = torch.tensor(curve)
    torch.testing.assert_close(curves[True], curves[False], rtol=0.05, atol=0.02)


@pytest.mark.gpu
@needs_cuda
def test_self_check_passes_on_a_real_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    runners: list[graphed.StepRunner] = []
    real_init = graphed.StepRunner.__init__

    def init(self: graphed.StepRunner, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        runners.append(self)

    monkeypatch.setattr(graphed.StepRunner, "__init__", init)
    cfg = TrainConfig(epochs=1, max_batches_per_epoch=30, cuda_graph_min_steps=0)
    res = train_child(small_cnn(in_ch=3, size=32, seed=0), _cuda_data(), cfg, seed=0)
    assert res.cuda_graph and res.note is None, res.note
    assert runners[0].checked and graphed.self_check_verdict(runners[0].family) is True
    assert res.precision == accel.choose_precision(torch.device("cuda"), True)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.skipif(not (DEBIAN_DATASET_DIR / "fashion-mnist").exists(),
                    reason="Fashion-MNIST not installed")
def test_graph_validation_accuracy_within_noise_of_eager() -> None:
    data = load_dataset("fashion-mnist", train_subset=10_000, device="cuda")
    accs = {}
    for graph in (False, True):
        cfg = TrainConfig(epochs=2, cuda_graph=graph)
        res = train_child(small_cnn(seed=0), data, cfg, seed=0)
        assert not res.failed and res.cuda_graph is graph, res.note
        accs[graph] = res.val_accuracy
    assert accs[False] > 0.75
    assert abs(accs[True] - accs[False]) <= 0.02, accs


@pytest.mark.gpu
@needs_cuda
def test_graph_detects_divergence() -> None:
    cfg = TrainConfig(epochs=2, max_batches_per_epoch=60, lr=1e8, cuda_graph_min_steps=0)
    res = train_child(small_cnn(in_ch=3, size=32, bn=False), _cuda_data(), cfg)
    assert res.failed and "non-finite" in (res.reason or "")


def test_fp16_children_train_eagerly_with_a_grad_scaler(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pre-Ampere GPUs: fp16 with a scaler, no graph (and a note saying why). Run on CPU here."""
    scalers: list[Any] = []

    def scaler() -> Any:
        scalers.append(torch.amp.GradScaler("cpu", init_scale=2.0**8))
        return scalers[-1]

    eager, eager_net = _eager()  # plain fp32, before fp16 is forced
    monkeypatch.setattr(training, "_graph_steps_wanted", lambda device, config: config.cuda_graph)
    monkeypatch.setattr(training, "choose_precision", lambda device, amp: "fp16")
    monkeypatch.setattr(training, "grad_scaler", scaler)
    res, net = _graphed()
    assert res.precision == "fp16" and not res.cuda_graph and res.fallback is None
    assert res.note is not None and "fp16 needs a gradient scaler" in res.note
    assert len(scalers) == 1 and scalers[0].get_scale() == 2.0**8
    # autocast is CUDA-only and the scale a power of two: on CPU the scaled steps are fp32's
    assert res.val_accuracy == eager.val_accuracy
    _same_weights(net, eager_net, rtol=1e-5, atol=1e-6)


def test_family_is_layer_kinds_dropout_precision_and_format() -> None:
    def fam(arch: str, dropout: float = 0.0, precision: str = "bf16") -> str:
        net = build_network(arch, (1, 28, 28), dropout=dropout, seed=0)
        return graphed.family_of(net, precision, True)

    plain = fam("C(16,3,1), P(2,2,MAX), FC(64), SM(10)")
    assert plain == fam("C(32,5,1), C(8,3,1), P(2,2,MAX), FC(128), SM(10)")  # sizes don't count
    assert plain != fam("C(16,3,1), P(2,2,MAX), FC(64), SM(10)", dropout=0.2)
    assert plain != fam("C(16,3,1), P(2,2,MAX), FC(64), SM(10)", precision="fp32")
    assert plain != fam("C(16,3,1), FC(64), SM(10)")
