"""Flow matching in GR00T's convention: time sampling, buckets, the Euler sampler, the loss."""
from __future__ import annotations

import pytest
import torch

from lara_g1.lara.model import LaraPolicy, PolicyConfig
from lara_g1.lara.model.flow import euler_buckets, interpolate, sample_flow_time, time_to_bucket


@pytest.fixture(scope="module")
def policy() -> LaraPolicy:
    torch.manual_seed(0)
    return LaraPolicy(PolicyConfig.from_preset("tiny", dit_layers=3, standin_layers=1)).eval()


def _inputs(policy: LaraPolicy, batch: int = 2):
    cfg = policy.config
    g = torch.Generator().manual_seed(1)
    vl = torch.randn(batch, 5, cfg.vl_dim, generator=g)
    state = torch.randn(batch, cfg.max_state_dim, generator=g)
    return vl, state, torch.zeros(batch, dtype=torch.int64)


def test_euler_buckets_are_groots():
    assert euler_buckets(4) == [0, 250, 500, 750]
    assert euler_buckets(1) == [0]


def test_sampler_integrates_the_exact_flow_to_its_target(policy, monkeypatch):
    """With the true velocity of a straight path to a*, v = (a* - x) / (1 - t), Euler is exact."""
    vl, state, eid = _inputs(policy)
    target = torch.randn(2, policy.config.horizon, 32, generator=torch.Generator().manual_seed(7))
    noise = torch.randn(2, policy.config.horizon, 32, generator=torch.Generator().manual_seed(8))
    seen = []

    def oracle(vl_features, state, noisy_actions, timestep, embodiment_id, return_hidden=False):
        seen.append(timestep.tolist())
        t = timestep.to(torch.float32)[:, None, None] / 1000.0
        return (target - noisy_actions) / (1.0 - t)

    monkeypatch.setattr(policy, "velocity", oracle)
    out = policy.sample(vl, state, eid, noise)
    torch.testing.assert_close(out, target, atol=1e-5, rtol=0)
    assert seen == [[0, 0], [250, 250], [500, 500], [750, 750]]


def test_sampler_applies_quarter_steps(policy, monkeypatch):
    """v = -x: four Euler steps of 0.25 give x0 * 0.75**4 (not the ODE's exp(-1))."""
    vl, state, eid = _inputs(policy)
    noise = torch.randn(2, policy.config.horizon, 32)
    monkeypatch.setattr(policy, "velocity", lambda vl_, s, x, t, e, return_hidden=False: -x)
    torch.testing.assert_close(policy.sample(vl, state, eid, noise), noise * 0.75 ** 4)


def test_sample_is_a_function_of_the_noise(policy):
    vl, state, eid = _inputs(policy)
    n1 = torch.randn(2, policy.config.horizon, 32, generator=torch.Generator().manual_seed(1))
    n2 = torch.randn(2, policy.config.horizon, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a, b, c = (policy.sample(vl, state, eid, n) for n in (n1, n1, n2))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_flow_time_follows_shifted_beta():
    t = sample_flow_time(200_000, generator=torch.Generator().manual_seed(0))
    s = 0.999 - 0.999 * t  # back to Beta(1.5, 1) samples
    assert float(t.min()) >= (0.999 - 1) / 0.999 - 1e-6 and float(t.max()) <= 1.0
    assert abs(float(s.mean()) - 1.5 / 2.5) < 0.005                   # Beta(1.5, 1) mean
    assert abs(float((s <= 0.5).float().mean()) - 0.5 ** 1.5) < 0.005  # its CDF s**1.5
    assert float((t < 0.5).float().mean()) > 0.6                        # noisy end sampled most


def test_time_to_bucket_floors_and_clamps():
    t = torch.tensor([-0.001, 0.0, 0.2499, 0.25, 0.9999, 1.0])
    assert time_to_bucket(t).tolist() == [0, 0, 249, 250, 999, 999]


def test_interpolate_endpoints():
    noise, act = torch.randn(3, 4, 2), torch.randn(3, 4, 2)
    assert torch.equal(interpolate(noise, act, torch.zeros(3)), noise)
    assert torch.equal(interpolate(noise, act, torch.ones(3)), act)


def test_flow_loss_matches_manual_masked_mse(policy):
    vl, state, eid = _inputs(policy)
    h = policy.config.horizon
    actions = torch.randn(2, h, 32)
    mask = torch.ones(2, h, dtype=torch.bool)
    mask[1, 5:] = False
    out = policy.flow_loss(vl, state, actions, mask, eid, generator=torch.Generator().manual_seed(3))

    g = torch.Generator().manual_seed(3)
    t = sample_flow_time(2, generator=g)
    noise = torch.randn(actions.shape, generator=g)
    v, hidden = policy.velocity(vl, state, interpolate(noise, actions, t), time_to_bucket(t), eid, return_hidden=True)
    err = (v - (actions - noise))[..., :28].pow(2)
    expected = torch.cat([err[0].reshape(-1), err[1, :5].reshape(-1)]).mean()
    torch.testing.assert_close(out["loss"], expected)
    assert torch.equal(out["timestep"], time_to_bucket(t))
    assert out["hidden"].shape == (2, 1 + h, policy.config.width)
    torch.testing.assert_close(out["hidden"], hidden[policy.config.dit_layers - 2])


def test_flow_loss_ignores_masked_steps_and_padded_dims(policy, monkeypatch):
    """With a zero velocity the loss is mean((action - noise)^2) over valid steps and the 28 real dims:
    changing the actions at masked steps or in the padding must not change it at all."""
    vl, state, eid = _inputs(policy)
    h = policy.config.horizon
    monkeypatch.setattr(policy, "velocity", lambda vl_, s, x, t, e, return_hidden=False:
                        (torch.zeros_like(x), [torch.zeros(x.shape[0], 1 + h, 4)] * policy.config.dit_layers))
    actions = torch.randn(2, h, 32)
    mask = torch.ones(2, h, dtype=torch.bool)
    mask[:, 6:] = False
    changed = actions.clone()
    changed[:, 6:] += 5.0       # masked steps
    changed[..., 28:] += 5.0    # padding beyond the 28 G1 dims
    loss_a, loss_b = (policy.flow_loss(vl, state, a, mask, eid, generator=torch.Generator().manual_seed(4))["loss"]
                      for a in (actions, changed))
    assert torch.equal(loss_a, loss_b)
    loss_all = policy.flow_loss(vl, state, changed, torch.ones(2, h, dtype=torch.bool), eid,
                                generator=torch.Generator().manual_seed(4))["loss"]
    assert float(loss_all) > float(loss_b) + 1.0


def test_flow_loss_backpropagates_into_the_head(policy):
    vl, state, eid = _inputs(policy)
    policy.zero_grad()
    out = policy.flow_loss(vl, state, torch.randn(2, policy.config.horizon, 32),
                           torch.ones(2, policy.config.horizon, dtype=torch.bool), eid)
    out["loss"].backward()
    assert policy.head.dit.blocks[0].attn.to_q.weight.grad.abs().sum() > 0
    assert policy.head.action_encoder.w1.weight.grad[0].abs().sum() > 0
    assert policy.head.action_encoder.w1.weight.grad[1:].abs().sum() == 0  # other embodiments untouched
    policy.zero_grad()
