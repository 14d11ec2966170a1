"""Why a stage-1 transformer falls short of its accelerator: distribution shift or too little training? Loads a
stage-1 checkpoint (accelerated.pt) of td3_accel_mujoco.py and prints
- both policies' returns (10 deterministic episodes),
- the transformer's BC error (MSE against the accelerator's actor) on states the accelerator visits (with its
  exploration noise, as in T) and on states the transformer visits itself,
- the transformer's return after 125-1000 more BC steps (batch 256, lr 3e-4) on 5000 states of the accelerator's
  current policy, and those of fresh transformers (context 3 and 1: does the observation history let it copy the
  previous action instead of learning the policy?) trained the same way.
Used for the Pendulum findings of the transfer study in RESULTS.md. Never imported by the training scripts.

    python analysis/clone_diagnosis.py runs/transfer_after/Pendulum-v1__td3_accel_mujoco__2__*/accelerated.pt
"""

import dataclasses
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import td3_accel_mujoco as m  # noqa: E402


def main(path: str) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    ck = torch.load(path, map_location="cpu", weights_only=False)
    args = m.Args(**ck["args"])
    env = m.make_env(args.env_id, 0)
    low, high = env.action_space.low.astype(np.float32), env.action_space.high.astype(np.float32)
    obs_dim = ck["obs_dim"]
    actor = m.Actor(obs_dim, low, high)
    actor.load_state_dict(ck["actor"])
    actor.eval()
    rng = np.random.default_rng(0)

    def transformer(state_dict=None, context_len=3):
        net = m.make_transformer(obs_dim, low, high, dataclasses.replace(args, context_len=context_len))
        if state_dict is not None:
            net.load_state_dict(state_dict)
        return net.eval()

    def returns(act, context_len=3, episodes=10):
        return m.evaluate(env, act, episodes, 777, context_len, 0)

    def accelerator_act(w):
        return m.mlp_act(actor, w.obs[-1], "cpu")

    def transformer_act(net):
        return lambda w: m.transformer_act(net, w, "cpu")

    def visited(steps, act, noise):
        """Windows of `steps` states visited by `act` with Gaussian exploration noise (scale * half the range)."""
        windows, valids = [], []
        w = m.EpisodeWindow(3, obs_dim)
        w.reset(env.reset(seed=123)[0])
        for _ in range(steps):
            a = np.clip(act(w) + rng.normal(0, noise * (high - low) / 2), low, high).astype(np.float32)
            windows.append(w.obs.copy())
            valids.append(w.valid.copy())
            obs, _, terminated, truncated, _ = env.step(a)
            if terminated or truncated:
                w.reset(env.reset()[0])
            else:
                w.push(obs)
        return torch.tensor(np.array(windows)), torch.tensor(np.array(valids))

    def bc_error(net, windows, valids):
        with torch.no_grad():
            return F.mse_loss(net(windows, valids), actor(windows[:, -1])).item()

    def clone(net, windows, valids, steps, report, context_len=3):
        opt, out = torch.optim.Adam(net.parameters(), lr=3e-4), []
        for step in range(1, steps + 1):
            net.train()
            idx = torch.randint(0, len(windows), (256,))
            loss = F.mse_loss(net(windows[idx], valids[idx]), actor(windows[idx][:, -1]).detach())
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step in report:
                net.eval()
                out.append(f"{step}: {returns(transformer_act(net), context_len, 5):.0f}")
        return ", ".join(out)

    stage1 = transformer(ck["transformer"])
    print(f"returns: accelerator {returns(accelerator_act):.1f}, transformer {returns(transformer_act(stage1)):.1f}")
    windows, valids = visited(5000, accelerator_act, args.exploration_noise)
    own_windows, own_valids = visited(2000, transformer_act(stage1), 0.0)
    print(f"BC error on the accelerator's states {bc_error(stage1, windows, valids):.4f}, "
          f"on the transformer's own states {bc_error(stage1, own_windows, own_valids):.4f}")  # fmt: skip
    print("stage-1 transformer, more BC steps on the accelerator's current states:",
          clone(transformer(ck["transformer"]), windows, valids, 1000, (125, 250, 500, 1000)))  # fmt: skip
    torch.manual_seed(0)
    print("fresh transformer, context 3:", clone(transformer(None, 3), windows, valids, 1000, (250, 500, 1000)))
    torch.manual_seed(0)
    print("fresh transformer, context 1:",
          clone(transformer(None, 1), windows[:, -1:], valids[:, -1:], 1000, (250, 500, 1000), 1))  # fmt: skip


if __name__ == "__main__":
    if len(sys.argv) != 2 or not os.path.isfile(sys.argv[1]):
        sys.exit("usage: python analysis/clone_diagnosis.py runs/<run>/accelerated.pt")
    main(sys.argv[1])
