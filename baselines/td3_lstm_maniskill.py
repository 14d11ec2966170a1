"""Baseline for "Accelerating Transformers in Online RL": TD3 with an LSTM actor and twin LSTM critics (each its own
LSTM over the episode's last observations, as in baselines/td3_lstm_mujoco.py), trained from scratch on ManiSkill3.
Parallel envs; steps are env steps summed over envs; per-env context windows and replay. Simulators as in
td3_accel_maniskill.py: `cpu` (one CPU env per process, tested) and `gpu` (ManiSkill's GPU-parallel envs; UNTESTED).

    python baselines/td3_lstm_maniskill.py --env-id PushCube-v1 --sim-backend cpu --num-envs 2
    python baselines/td3_lstm_maniskill.py --resume runs/RUN_DIR    # continue an interrupted run

SIGTERM/SIGINT finish the step, write RUN_DIR/resume.pt and exit 3. Resumed where every env had just started an
episode, the same episodes start again (not an exact replay: PhysX depends on the steps it ran before); elsewhere every
env starts a fresh one. CleanRL-style: the method, top to bottom, then main(); the last section, "Plumbing", holds
validation, checkpoints and resume, signals and progress.
"""

import glob
import math
import os
import random
import re
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Literal

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro


# tyro keeps a docstring's line breaks in --help, so a long help text is one string split in parentheses
# fmt: off
@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]  # experiment name (part of the run directory's)
    seed: int = 1  # seed of the experiment
    torch_deterministic: bool = True
    ("if toggled, deterministic torch algorithms (`torch.use_deterministic_algorithms`, cuDNN deterministic, "
     "and on CUDA the cuBLAS workspace setting they need)")
    cuda: bool = True  # if toggled, cuda will be used when available (networks and buffers; see also --sim-backend)
    num_threads: int = field(default_factory=lambda: default_threads())
    ("CPU threads for torch when no GPU is used; default: OMP_NUM_THREADS if set, else 1 (runs side by side "
     'stay fast; BENCHMARKS.md, "Runs side by side"). A lone run on an idle 2-core machine may take 2')
    track: bool = False  # if toggled, this experiment will be tracked with Weights and Biases
    wandb_project_name: str = "transformer-acceleration"  # the wandb's project name
    wandb_entity: str | None = None  # the entity (team) of wandb's project
    run_dir: str = "runs"  # where run directories (TensorBoard events, checkpoints) are created
    checkpoint_frequency: int = 50_000
    ("write the run's resumable state (networks, optimizers, replay buffer, RNGs, env generators) to "
     "RUN_DIR/resume.pt every this many env steps, replacing the previous one; 0: only on SIGTERM/SIGINT")
    resume: str | None = None
    ("continue the unfinished run in this run directory from its resume.pt, with its flags; only the total steps, "
     "evaluation, logging, checkpoint frequency and threads may be given anew. Where every env had just started an "
     "episode the same episodes start again (not an exact replay: PhysX's results depend on the steps it ran before); "
     "elsewhere every env starts a fresh one")

    # Environment
    env_id: str = "PushCube-v1"  # the id of a ManiSkill3 task (PushCube-v1, PullCube-v1, PickCube-v1, ...)
    num_envs: int = 50  # parallel training envs (Table 1: 50); on the CPU simulator each is a process
    num_eval_envs: int = 16  # parallel evaluation envs (separate from the training envs)
    control_mode: str = "pd_joint_delta_pos"  # the robot's controller (ManiSkill's RL default; sets the action space)
    obs_mode: str = "state"  # observation mode: only `state` (flat state vectors) is supported
    sim_backend: Literal["auto", "gpu", "cpu"] = "auto"
    ("simulator: `gpu` (ManiSkill's GPU-parallel envs, needs CUDA; untested), `cpu` (one CPU env per process), or "
     "`auto` (gpu when CUDA is available and --cuda, else cpu)")
    ignore_terminations: bool = False
    ("if toggled, training episodes run to the time limit instead of ending at success (evaluation always runs to "
     "the time limit)")
    total_timesteps: int = 1_000_000  # total env steps (summed over envs; rounded up to whole steps of all envs)

    # TD3 (Table 1, ManiSkill)
    buffer_size: int = 50_000  # replay buffer size, in transitions over all envs
    learning_starts: int = 600  # env steps of uniform random actions before learning starts
    batch_size: int = 600  # minibatch size of every TD3 update
    utd: float = 0.5
    """gradient updates per env step (update-to-data ratio; not given in the paper), as in td3_accel_maniskill.py"""
    gamma: float = 0.8  # the discount factor gamma
    tau: float = 0.01  # target smoothing coefficient
    policy_noise: float = 0.2  # the scale of the target policy smoothing noise
    noise_clip: float = 0.5  # the clip of the target policy smoothing noise
    exploration_noise: float = 0.1  # the scale of the Gaussian exploration noise
    policy_frequency: int = 2  # the frequency (in TD3 updates) of delayed actor (and target) updates
    learning_rate: float = 3e-4  # Adam learning rate of every network

    # LSTM actor and critics (as in baselines/td3_lstm_mujoco.py)
    history_len: int = 3
    ("observations of the current episode each LSTM reads (3: the transformer's context, so both see the same "
     "windows)")
    lstm_hidden_size: int = 128  # hidden (and cell) state size of every LSTM (the paper gives none)

    # Evaluation and logging
    eval_frequency: int = 10_000  # evaluate (deterministic actions, eval envs, full episodes) every this many env steps
    eval_episodes: int = 16  # episodes per evaluation (run --num-eval-envs at a time)
    log_frequency: int = 1000  # log losses and SPS every this many env steps
# fmt: on


# ---------------------------------------------------------------------------------------------------------------
# Environments
class VecEnv:
    """num_envs envs behind one interface for both simulators, with tensors on `device`. step() returns
    (next_obs, final_obs, reward, terminated, done, success): for an env whose episode ended (`done`), next_obs is
    already the first observation of its next episode (auto-reset in the same step) and final_obs the true s' of the
    step; for the others both are s'. success is the task's success flag after the step (of the ending episode)."""

    def __init__(self, env, device, on_gpu: bool):
        self.env, self.device, self.on_gpu = env, device, on_gpu
        self.num_envs = env.num_envs
        space = env.single_action_space
        self.obs_dim, self.act_dim = env.single_observation_space.shape[0], space.shape[0]
        self.low = torch.as_tensor(space.low, dtype=torch.float32, device=device)
        self.high = torch.as_tensor(space.high, dtype=torch.float32, device=device)
        if not on_gpu and env.metadata.get("autoreset_mode") != gym.vector.AutoresetMode.SAME_STEP:
            raise ValueError("VecEnv needs a gymnasium vector env with autoreset_mode=AutoresetMode.SAME_STEP")

    def _tensor(self, x, dtype=torch.float32):
        return torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x, dtype=dtype).to(self.device)

    def reset(self, seed: int | None = None):
        obs, _ = self.env.reset(seed=seed)
        return self._tensor(obs)

    def step(self, actions: torch.Tensor):
        if self.on_gpu:
            obs, reward, terminated, truncated, info = self.env.step(actions)
        else:
            obs, reward, terminated, truncated, info = self.env.step(actions.cpu().numpy())
        obs, reward = self._tensor(obs), self._tensor(reward).reshape(self.num_envs)
        terminated = self._tensor(terminated, torch.bool).reshape(self.num_envs)
        done = terminated | self._tensor(truncated, torch.bool).reshape(self.num_envs)
        success = self._tensor(info.get("success", np.zeros(self.num_envs)), torch.bool).reshape(self.num_envs)
        final_obs = obs.clone()
        if done.any():
            # the step's own results of the envs that reset: gymnasium's SAME_STEP keys / ManiSkillVectorEnv's keys
            last = info["final_obs"] if "final_obs" in info else info["final_observation"]
            if not self.on_gpu:  # an object array with an entry only where the env reset
                last = np.stack([last[i] if done[i] else np.zeros(self.obs_dim) for i in range(self.num_envs)])
            final_obs = torch.where(done[:, None], self._tensor(last), obs)
            if "success" in info.get("final_info", {}):
                final_success = self._tensor(info["final_info"]["success"], torch.bool).reshape(self.num_envs)
                success = torch.where(done, final_success, success)
        return obs, final_obs, reward, terminated, done, success

    def generators(self, episode_start: bool) -> list | None:
        """Each CPU env's random generators (EnvGenerators), for resume.pt: as they were before its current episode's
        reset where every env has just started an episode (`episode_start`), else as they are now; None on the GPU
        simulator (not saved)."""
        if self.on_gpu:
            return None
        return list(self.env.get_attr("reset_generators" if episode_start else "generators"))

    def reset_from(self, generators: list | None):
        """--resume: give each CPU env its saved generators back (where saved), then reset all envs. From generators
        saved at an episode start this starts the same episodes again; from others, the episodes their next reset
        would have started."""
        if generators is not None:
            self.env.set_attr("generators", generators)
        return self.reset()

    def close(self):
        self.env.close()


def use_gpu_sim(args: Args) -> bool:
    return args.sim_backend == "gpu" or (args.sim_backend == "auto" and args.cuda and torch.cuda.is_available())


def make_envs(args: Args, num_envs: int, ignore_terminations: bool, device) -> VecEnv:
    """num_envs ManiSkill envs (state observations) for this run's simulator, with auto-reset."""
    try:
        import mani_skill.envs  # noqa: F401 - registers the tasks
        from mani_skill.utils.registration import REGISTERED_ENVS
    except ImportError:
        raise UsageError("ManiSkill is not installed: pip install mani_skill==3.0.1") from None
    if args.env_id not in REGISTERED_ENVS:
        raise UsageError(f"--env-id {args.env_id}: not a ManiSkill task (e.g. PushCube-v1, PullCube-v1, PickCube-v1)")
    kwargs = dict(obs_mode=args.obs_mode, control_mode=args.control_mode)
    try:
        if use_gpu_sim(args):
            from mani_skill.vector.wrappers.gymnasium import ManiSkillVectorEnv

            env = gym.make(args.env_id, num_envs=num_envs, sim_backend="physx_cuda", **kwargs)
            return VecEnv(ManiSkillVectorEnv(env, num_envs, ignore_terminations=ignore_terminations), device, True)
        from mani_skill.utils.wrappers.gymnasium import CPUGymWrapper

        main_pid = os.getpid()

        def make_one():
            if os.getpid() != main_pid:
                # an env process: Ctrl-C reaches the whole process group and Slurm signals every process of a job,
                # but the main process is the one to act (it finishes its step with these envs, saves, closes them)
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            env = gym.make(args.env_id, num_envs=1, sim_backend="physx_cpu", render_backend="none", **kwargs)
            return EnvGenerators(CPUGymWrapper(env, ignore_terminations=ignore_terminations))

        vec = gym.vector.AsyncVectorEnv([make_one] * num_envs, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
        return VecEnv(vec, device, False)
    except Exception as e:  # noqa: BLE001 - env construction failures are the user's setup or flags
        if "rendering device" in str(e) or "Vulkan" in str(e) or "vk::" in str(e):
            raise UsageError(VULKAN_HINT) from None
        if "physx-precompiled" in str(e):  # SAPIEN fetches its GPU PhysX library from GitHub on first GPU use
            version = (re.findall(r"download/([^/\s]+)/linux-so", str(e)) or ["<version>"])[0]
            raise UsageError(
                f"the GPU simulator needs SAPIEN's PhysX GPU library, which it downloads on first use and could not: "
                f"unzip github.com/sapien-sim/physx-precompiled/releases/download/{version}/linux-so.zip into "
                f"~/.sapien/physx/{version}/, or use --sim-backend cpu"
            ) from None
        message = " ".join(str(e).split()) or type(e).__name__
        raise UsageError(f"--env-id {args.env_id} --control-mode {args.control_mode}: {message}") from None


# ---------------------------------------------------------------------------------------------------------------
# Networks
class WindowLSTM(nn.Module):
    """Summarizes a left-padded observation window (B, K, obs_dim) with an LSTM from a zero state: the LSTM steps
    over the K positions, and padding (which precedes the episode's first observation: `valid` is False on a prefix
    of each row) leaves the zero state exactly zero, so the result equals running the LSTM over the valid
    observations alone: padded content can neither reach the output nor receive gradient.

    The parameters are an nn.LSTMCell's (state_dicts unchanged), but the steps run in `steps`, by hand, with a
    hand-written backward (`_Function`) when a gradient is wanted: no recurrent product at the zero first state,
    tanh(x) as 2 sigmoid(2x) - 1 (several times faster than tanh on the CPU), the padding as a zero input gate (at
    a padded step the state entering is exactly zero, so c = f 0 + 0 tanh(g) = 0 and h = o tanh(0) = 0 exactly, and
    the gate gradients come out exactly zero there without a mask in the backward: one product per step instead of
    masking h and c), few fresh buffers (on this CPU writing fresh memory cost more than the elementwise ops), and
    the weight gradients accumulated step by step in the fast product orders. Same outputs and gradients as
    stepping `self.cell` to float32 rounding (tests/test_lstm_speed_equivalence.py); benchmarks/bench_lstm_update.py
    times it."""

    @staticmethod
    def steps(window, valid, w_ih, w_hh, b_ih, b_hh, saved: list | None = None):
        """The forward pass -> h (B, H). With `saved` a list, what the backward pass needs is appended; without,
        one gates buffer serves every step."""
        batch, length, _ = window.shape
        keep = valid.t()[..., None].to(window.dtype)  # (K, B, 1): 1 valid, 0 padding
        w_in, bias = w_ih.t(), b_ih + b_hh
        buffer = None if saved is not None else window.new_empty(batch, w_ih.shape[0])
        acts, tgs, tcs, hs, cs = [], [], [], [], []
        h = c = None  # the zero state
        for k in range(length):
            gates = torch.addmm(bias, window[:, k], w_in, out=buffer)  # activated in place
            if h is not None:
                gates.addmm_(h, w_hh.t())
            gates = gates.view(batch, 4, -1)
            gates[:, 2].mul_(2)
            gates.sigmoid_()  # i, f, sigmoid(2 g), o
            i, f, s, o = gates.unbind(1)
            i.mul_(keep[k])  # a padded row's state stays exactly zero (the zero state enters it)
            if saved is None:  # nothing is kept: tanh(g), c and h are written over in place
                tg = s.mul_(2).sub_(1)
                c = torch.mul(i, tg) if c is None else c.mul_(f).addcmul_(i, tg)
                h = torch.mul(c, 2, out=h).sigmoid_().mul_(2).sub_(1).mul_(o)  # h is read: h_new = o tanh(c)
                continue
            tg = torch.mul(s, 2).sub_(1)  # tanh(g)
            c_new = torch.mul(i, tg) if c is None else torch.mul(i, tg).addcmul_(f, c)
            tc = torch.mul(c_new, 2).sigmoid_().mul_(2).sub_(1)  # tanh(c_new)
            acts.append(gates), hs.append(h), cs.append(c), tgs.append(tg), tcs.append(tc)
            h, c = o * tc, c_new
        if saved is not None:
            saved += [window, w_ih, w_hh, *acts, *tgs, *tcs, *hs[1:], *cs[1:]]
        return h

    class _Function(torch.autograd.Function):
        @staticmethod
        def forward(ctx, window, valid, w_ih, w_hh, b_ih, b_hh):
            saved = []
            h = WindowLSTM.steps(window, valid, w_ih, w_hh, b_ih, b_hh, saved)
            ctx.save_for_backward(*saved)
            ctx.used = False
            return h

        @staticmethod
        def backward(ctx, dh):
            if ctx.used:  # the saved gates were overwritten by their gradients below
                raise RuntimeError("WindowLSTM's backward can run only once per forward (no retain_graph)")
            ctx.used = True
            window, w_ih, w_hh, *rest = ctx.saved_tensors
            batch, length, _ = window.shape
            acts, tgs, tcs = rest[:length], rest[length : 2 * length], rest[2 * length : 3 * length]
            hs, cs = [None, *rest[3 * length : 4 * length - 1]], [None, *rest[4 * length - 1 :]]
            want_window, _, want_ih, want_hh, want_b, want_b2 = ctx.needs_input_grad
            # each step's gate gradient goes into the weight gradients at once; it is built in that step's saved
            # gates (no longer needed) from one buffer. No padding mask: at a padded step the saved input gate is 0
            # (its sigmoid' i (1 - i) too), the entering c and tanh(c) are 0, so every gate gradient there is 0
            dgates = torch.empty_like(acts[0])
            di, df, dg, do = dgates.unbind(1)
            dwindow = window.new_empty(window.shape) if want_window else None
            dw_ih = w_ih.new_zeros(w_ih.shape[::-1]) if want_ih else None  # transposed
            dw_hh = w_hh.new_zeros(w_hh.shape[::-1]) if want_hh else None  # transposed
            db = w_ih.new_zeros(w_ih.shape[0]) if want_b or want_b2 else None
            dc = torch.empty_like(dh) if length > 1 else None  # the cell gradient carried back a step
            dh_next = torch.empty_like(dh) if length > 1 else None  # dh's buffer after the last step
            for k in range(length - 1, -1, -1):
                a, tc = acts[k], tcs[k]
                i, f, s, o = a.unbind(1)
                torch.mul(dh, tc, out=do)
                dcn = torch.addcmul(dh, do, tc, value=-1, out=di).mul_(o)  # (1 - tanh(c)^2) o dh, in di until last
                if k < length - 1:
                    dcn.add_(dc)
                if k > 0:
                    torch.mul(dcn, f, out=dc)
                if cs[k] is None:
                    df.zero_()
                else:
                    torch.mul(dcn, cs[k], out=df)
                torch.mul(dcn, i, out=dg).mul_(4)  # d tanh(g) / dg = 4 s (1 - s), s = sigmoid(2 g)
                di.mul_(tgs[k])
                dpre = a.addcmul_(a, a, value=-1).mul_(dgates).view(batch, -1)  # sigmoid' = s (1 - s)
                if want_window:
                    torch.mm(dpre, w_ih, out=dwindow[:, k])
                if want_ih:  # x^T dG is several times faster than dG^T x
                    dw_ih.addmm_(window[:, k].t(), dpre)
                if want_hh and k > 0:
                    dw_hh.addmm_(hs[k].t(), dpre)
                if db is not None:
                    db += dpre.sum(0)
                if k > 0:
                    dh = torch.mm(dpre, w_hh, out=dh_next)
            return dwindow, None, None if dw_ih is None else dw_ih.t(), None if dw_hh is None else dw_hh.t(), db, db

    def __init__(self, obs_dim: int, hidden_size: int):
        super().__init__()
        self.cell = nn.LSTMCell(obs_dim, hidden_size)

    def forward(self, window, valid):
        cell = self.cell
        params = (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
        # through autograd only when a gradient is wanted (not for the target networks, acting, or the frozen
        # critic's LSTM in the actor loss)
        if torch.is_grad_enabled() and (window.requires_grad or any(p.requires_grad for p in params)):
            return self._Function.apply(window, valid, *params)
        return self.steps(window, valid, *params)


class LSTMQNetwork(nn.Module):
    """Critic Q(window, a): an LSTM over the observation window; its final hidden state, concatenated with the
    action, goes through the MLP critic's head (2 layers of 256)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_size: int):
        super().__init__()
        self.lstm = WindowLSTM(obs_dim, hidden_size)
        self.fc1 = nn.Linear(hidden_size + act_dim, 256)
        self.fc2 = nn.Linear(256, 256)
        self.fc3 = nn.Linear(256, 1)

    def forward(self, window, valid, a):
        x = F.relu(self.fc1(torch.cat([self.lstm(window, valid), a], 1)))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class LSTMActor(nn.Module):
    """Actor pi(window): an LSTM over the observation window (its own, not the critics'); its final hidden state goes
    through the MLP actor's head (2 layers of 256), tanh-squashed to the action bounds."""

    def __init__(self, obs_dim: int, action_low: np.ndarray, action_high: np.ndarray, hidden_size: int):
        super().__init__()
        self.lstm = WindowLSTM(obs_dim, hidden_size)
        self.fc1 = nn.Linear(hidden_size, 256)
        self.fc2 = nn.Linear(256, 256)
        self.fc_mu = nn.Linear(256, len(action_low))
        self.register_buffer("action_scale", torch.tensor((action_high - action_low) / 2.0, dtype=torch.float32))
        self.register_buffer("action_bias", torch.tensor((action_high + action_low) / 2.0, dtype=torch.float32))

    def forward(self, window, valid):
        x = F.relu(self.fc1(self.lstm(window, valid)))
        x = F.relu(self.fc2(x))
        return torch.tanh(self.fc_mu(x)) * self.action_scale + self.action_bias


@torch.no_grad()
def soft_update(net: nn.Module, target: nn.Module, tau: float) -> None:
    """theta' <- tau * theta + (1 - tau) * theta'."""
    # one foreach call: 3-5x faster than a lerp_ per parameter on the CPU (BENCHMARKS.md); same values
    torch._foreach_lerp_(list(target.parameters()), list(net.parameters()), tau)


def adam(params, lr: float) -> torch.optim.Adam:
    """Adam as one fused kernel over all parameters: the same update, ~4x faster than the default per-parameter loop
    on the CPU (BENCHMARKS.md, tests/test_speed_equivalence.py)."""
    return torch.optim.Adam(params, lr=lr, fused=True)


# ---------------------------------------------------------------------------------------------------------------
# Context windows and replay (per env)
class EpisodeWindows:
    """For each env, the last `context_len` observations of its current episode, left-padded; never crosses an
    episode boundary or another env."""

    def __init__(self, num_envs: int, context_len: int, obs_dim: int, device):
        self.obs = torch.zeros(num_envs, context_len, obs_dim, device=device)
        self.valid = torch.zeros(num_envs, context_len, dtype=torch.bool, device=device)

    def reset(self, obs) -> None:
        self.push(obs, torch.ones(len(obs), dtype=torch.bool, device=obs.device))

    def push(self, obs, new_episode=None) -> None:
        """Append each env's observation; where new_episode is set, obs starts a new episode (the rest is cleared)."""
        self.obs = torch.cat([self.obs[:, 1:], obs[:, None]], 1)
        self.valid = torch.cat([self.valid[:, 1:], torch.ones_like(self.valid[:, :1])], 1)
        if new_episode is not None and new_episode.any():
            self.obs[new_episode, :-1] = 0.0
            self.valid[new_episode, :-1] = False


class ReplayBuffer:
    """Per-env ring buffer: row t, column e holds env e's transition (s, a, r, s', terminated) of its t-th step in
    the buffer, with the step index of s inside its episode. A column is one env's history in order, so the context
    window of s and s' is rebuilt for any sampled transition from the rows above it, without storing windows."""

    FIELDS = ("obs", "next_obs", "actions", "rewards", "terminations", "episode_step")

    def __init__(self, size: int, num_envs: int, obs_dim: int, act_dim: int, device):
        self.rows, self.num_envs, self.device = max(1, math.ceil(size / num_envs)), num_envs, device
        shape = (self.rows, num_envs)
        self.obs = torch.zeros(*shape, obs_dim, device=device)
        self.next_obs = torch.zeros(*shape, obs_dim, device=device)
        self.actions = torch.zeros(*shape, act_dim, device=device)
        self.rewards = torch.zeros(shape, device=device)
        self.terminations = torch.zeros(shape, device=device)
        self.episode_step = torch.zeros(shape, dtype=torch.long, device=device)
        self.ptr, self.count = 0, 0  # in rows

    def add(self, obs, next_obs, action, reward, terminated, episode_step) -> None:
        """One step of all envs; next_obs is the true s' (the final observation where an episode ended)."""
        i = self.ptr
        self.obs[i], self.next_obs[i], self.actions[i] = obs, next_obs, action
        self.rewards[i], self.terminations[i], self.episode_step[i] = reward, terminated.float(), episode_step
        self.ptr = (self.ptr + 1) % self.rows
        self.count = min(self.count + 1, self.rows)

    def __len__(self) -> int:
        return self.count * self.num_envs

    def windows(self, t, e, context_len: int):
        """Windows of s and s' for transitions (row t, env e): a position is valid if it lies in the same episode
        of the same env and has not been overwritten. The window of s' is that of s shifted by one, ending in s'."""
        offsets = torch.arange(context_len - 1, -1, -1, device=self.device)  # position j: `offsets[j]` steps back
        src = (t[:, None] - offsets[None, :]) % self.rows
        age = (self.ptr - 1 - t) % self.rows  # 0 for the newest row
        valid = (self.episode_step[t, e][:, None] >= offsets) & (age[:, None] + offsets <= self.count - 1)
        window = self.obs[src, e[:, None]] * valid[..., None]
        next_window = torch.cat([window[:, 1:], self.next_obs[t, e][:, None]], 1)
        next_valid = torch.cat([valid[:, 1:], torch.ones_like(valid[:, :1])], 1)
        return window, valid, next_window, next_valid

    def sample(self, batch_size: int, context_len: int = 0) -> dict:
        # with replacement, so stage 2 can learn from its first transitions (learning starts 0)
        t = torch.randint(0, self.count, (batch_size,), device=self.device)
        t = (self.ptr - self.count + t) % self.rows  # rows in use (all of them once the ring is full)
        e = torch.randint(0, self.num_envs, (batch_size,), device=self.device)
        data = dict(obs=self.obs[t, e], next_obs=self.next_obs[t, e], actions=self.actions[t, e],
                    rewards=self.rewards[t, e, None], terminations=self.terminations[t, e, None])  # fmt: skip
        if context_len:
            data["window"], data["valid"], data["next_window"], data["next_valid"] = self.windows(t, e, context_len)
        return data

    def state_dict(self) -> dict:
        # compact host copies of the filled rows (a slice of a tensor would save its whole storage)
        return buffer_state(self, {k: getattr(self, k)[: self.count].to("cpu", copy=True) for k in self.FIELDS})

    def load_state_dict(self, state: dict) -> None:
        load_buffer_state(self, state)


# ---------------------------------------------------------------------------------------------------------------
# Losses and updates
def td3_update(update, data, actor, actor_target, qf1, qf2, qf1_target, qf2_target, q_optimizer, actor_optimizer,
               args: Args) -> dict:  # fmt: skip
    """One TD3 step; `update` counts TD3 updates (delayed actor updates).
    Actor and critics each run their own LSTM over the windows of s and s'."""
    with torch.no_grad():
        noise = (torch.randn_like(data["actions"]) * args.policy_noise).clamp(-args.noise_clip, args.noise_clip)
        next_actions = actor_target(data["next_window"], data["next_valid"]) + noise * actor_target.action_scale
        next_actions = torch.max(torch.min(next_actions, actor.action_scale + actor.action_bias),
                                 actor.action_bias - actor.action_scale)  # fmt: skip
        next_q = torch.min(
            qf1_target(data["next_window"], data["next_valid"], next_actions),
            qf2_target(data["next_window"], data["next_valid"], next_actions),
        )
        target_q = data["rewards"] + (1 - data["terminations"]) * args.gamma * next_q
    qf1_loss = F.mse_loss(qf1(data["window"], data["valid"], data["actions"]), target_q)
    qf2_loss = F.mse_loss(qf2(data["window"], data["valid"], data["actions"]), target_q)
    q_optimizer.zero_grad()
    (qf1_loss + qf2_loss).backward()
    q_optimizer.step()
    losses = {"losses/qf1_loss": qf1_loss.detach(), "losses/qf2_loss": qf2_loss.detach()}
    if update % args.policy_frequency == 0:
        # qf1 frozen for the actor loss: its weight gradients would be dropped unused by the next zero_grad
        qf1.requires_grad_(False)
        try:
            actor_loss = -qf1(data["window"], data["valid"], actor(data["window"], data["valid"])).mean()
            actor_optimizer.zero_grad()
            actor_loss.backward()
        finally:
            qf1.requires_grad_(True)
        actor_optimizer.step()
        soft_update(actor, actor_target, args.tau)
        soft_update(qf1, qf1_target, args.tau)
        soft_update(qf2, qf2_target, args.tau)
        losses["losses/actor_loss"] = actor_loss.detach()
    return losses


# ---------------------------------------------------------------------------------------------------------------
# Acting and evaluation
def act(global_step: int, obs, windows: EpisodeWindows, actor, envs: VecEnv, args: Args) -> torch.Tensor:
    """The actor's action for all envs plus Gaussian exploration noise; uniform random before --learning-starts."""
    low, high = envs.low, envs.high
    if global_step < args.learning_starts:
        return low + torch.rand(envs.num_envs, envs.act_dim, device=low.device) * (high - low)
    with torch.no_grad():
        action = actor(windows.obs, windows.valid)
    noise = torch.randn_like(action) * (high - low) / 2 * args.exploration_noise
    return torch.max(torch.min(action + noise, high), low)


@torch.no_grad()
def evaluate(envs: VecEnv, policy, episodes: int, seed: int, context_len: int, step: int, tick=None) -> dict:
    """`episodes` deterministic episodes on the eval envs (which run to the time limit), --num-eval-envs at a time;
    policy(windows) -> actions. Returns the mean success_once (success at any step), success_at_end (at the last
    step) and undiscounted return.
    tick(episodes done, episodes), if given, runs every step of the eval envs (the progress bar; a signal stops the
    evaluation there)."""
    windows = EpisodeWindows(envs.num_envs, context_len, envs.obs_dim, envs.low.device)
    results = {"success_once": [], "success_at_end": [], "return": []}
    for r in range(math.ceil(episodes / envs.num_envs)):
        obs = envs.reset(seed=seed + r * envs.num_envs)
        windows.reset(obs)
        running = torch.ones(envs.num_envs, dtype=torch.bool, device=obs.device)  # one episode per env per round
        ret, once = torch.zeros(envs.num_envs, device=obs.device), torch.zeros_like(running)
        while running.any():
            if tick is not None:
                tick(min(len(results["return"]), episodes), episodes)
            action = policy(windows)
            check_action(action, "evaluated policy", step)
            obs, _, reward, _, done, success = envs.step(action)
            ret += reward * running
            once |= success & running
            ended = done & running
            for i in ended.nonzero()[:, 0].tolist():
                results["success_once"].append(float(once[i]))
                results["success_at_end"].append(float(success[i]))
                results["return"].append(float(ret[i]))
            running &= ~done
            windows.push(obs, done)
    return {k: float(np.mean(v[:episodes])) for k, v in results.items()}


# ---------------------------------------------------------------------------------------------------------------
# Training loop, for all envs at once
def crossed(step: int, num_envs: int, every: int) -> int:
    """How many multiples of `every` the last step of all envs (step - num_envs, step] passed."""
    return step // every - (step - num_envs) // every


def main(args: Args, on_step=None) -> None:
    """TD3. on_step, if given, is called with the loop's local variables after every step of all envs (the tests
    inspect buffers, windows and networks of the real loop through it)."""
    run = Run(args)  # checks the flags, reads resume.pt, seeds the generators, picks the device
    device, state = run.device, run.state
    with run:  # from here on the env processes and the writer are closed however the run ends
        # training episodes end at success unless --ignore-terminations; eval episodes always run to the time limit
        envs = run.closes(make_envs(args, args.num_envs, args.ignore_terminations, device))
        eval_envs = run.closes(make_envs(args, args.num_eval_envs, True, device))
        N, obs_dim, act_dim = envs.num_envs, envs.obs_dim, envs.act_dim
        low, high = envs.low.cpu().numpy(), envs.high.cpu().numpy()

        actor = LSTMActor(obs_dim, low, high, args.lstm_hidden_size).to(device)
        actor_target = LSTMActor(obs_dim, low, high, args.lstm_hidden_size).to(device)
        qf1, qf2, qf1_target, qf2_target = (LSTMQNetwork(obs_dim, act_dim, args.lstm_hidden_size).to(device)
                                            for _ in range(4))  # fmt: skip
        for net, target in [(actor, actor_target), (qf1, qf1_target), (qf2, qf2_target)]:
            target.load_state_dict(net.state_dict())
        q_optimizer = adam(list(qf1.parameters()) + list(qf2.parameters()), args.learning_rate)
        actor_optimizer = adam(actor.parameters(), args.learning_rate)
        rb = ReplayBuffer(args.buffer_size, N, obs_dim, act_dim, device)
        windows = EpisodeWindows(N, args.history_len, obs_dim, device)
        learners = dict(actor=actor, actor_target=actor_target, qf1=qf1, qf2=qf2, qf1_target=qf1_target,
                        qf2_target=qf2_target, q_optimizer=q_optimizer, actor_optimizer=actor_optimizer)  # fmt: skip

        global_step, total_steps = 0, whole_steps(args.total_timesteps, N)
        episode_count, updates, updates_owed, last_eval = 0, 0, 0.0, {}
        episode_step = torch.zeros(N, dtype=torch.long, device=device)
        obs = envs.reset(seed=args.seed)
        if state is not None:  # --resume: the saved step, the RNGs last (building the networks above drew from them)
            obs = run.restore(learners, rb, envs)
            keys = ("global_step", "episode_count", "updates", "updates_owed", "last_eval")
            global_step, episode_count, updates, updates_owed, last_eval = (state[k] for k in keys)
        windows.reset(obs)
        episode_return, episode_success = torch.zeros(N, device=device), torch.zeros(N, dtype=torch.bool, device=device)

        def resume_state() -> dict:  # everything the loop needs to go on from this step
            return {"global_step": global_step, "episode_count": episode_count, "updates": updates,
                    "updates_owed": updates_owed, "last_eval": last_eval, "rb": rb.state_dict(),
                    **run.rng_state(envs, episode_step),
                    **{k: v.state_dict() for k, v in learners.items()}}  # fmt: skip

        def evaluate_now() -> None:  # the actor's deterministic episodes on the eval envs
            nonlocal last_eval
            policy = lambda w: actor(w.obs, w.valid)  # deterministic: no exploration noise
            seed, tick = args.seed + 10_000 + global_step, run.evaluation(global_step)
            last_eval = evaluate(eval_envs, policy, args.eval_episodes, seed, args.history_len, global_step, tick)
            run.report(global_step, episode_count, last_eval)

        run.start(global_step, total_steps, obs_dim, resume_state)
        if state is not None and state.get("eval_pending"):  # a signal stopped this step's evaluation: redo it
            evaluate_now()
        while global_step < total_steps:
            action = act(global_step, obs, windows, actor, envs, args)
            check_action(action, "actor", global_step)
            next_obs, final_obs, reward, terminated, done, success = envs.step(action)
            rb.add(obs, final_obs, action, reward, terminated, episode_step)  # the true s', never a reset observation
            global_step += N
            episode_step += 1
            episode_return += reward
            episode_success |= success
            if done.any():  # means over the episodes that ended in this step
                run.log(global_step, {"charts/episodic_return": episode_return[done].mean().item(),
                                      "charts/episodic_length": episode_step[done].float().mean().item(),
                                      "charts/success_once": episode_success[done].float().mean().item()})  # fmt: skip
                episode_count += int(done.sum())
                episode_step[done], episode_return[done], episode_success[done] = 0, 0.0, False
            windows.push(next_obs, done)  # an env that reset starts its window afresh
            obs = next_obs

            losses = {}
            if global_step > args.learning_starts:  # --utd updates per env step, the fraction carried to the next
                updates_owed += N * args.utd
                for _ in range(int(updates_owed)):
                    updates += 1
                    data = rb.sample(args.batch_size, args.history_len)
                    losses = td3_update(updates, data, actor, actor_target, qf1, qf2, qf1_target, qf2_target,
                                        q_optimizer, actor_optimizer, args)  # fmt: skip
                    check_finite(losses, global_step)
                updates_owed -= int(updates_owed)
            run.log_step(global_step, losses)
            if crossed(global_step, N, args.eval_frequency) or global_step == total_steps:
                evaluate_now()
            if on_step is not None:
                on_step(locals())
            run.maybe_checkpoint(global_step)
        run.finish("final.pt", {"global_step": global_step, "obs_dim": obs_dim, "act_dim": act_dim,
                                **{k: v.state_dict() for k, v in learners.items()}, "eval": last_eval})  # fmt: skip


# ===============================================================================================================
# Plumbing: validation, checkpoints and resume, signals, progress and logging. Nothing below changes what is learned.
# ===============================================================================================================
# The resumable state of an unfinished run (see the top of this file); removed when the run ends.
RESUME_FILE = "resume.pt"
# Flags a resumed run may set anew (total steps, evaluation, logging, threads); all others must match the run's.
RESUME_SAFE = ("total_timesteps", "eval_frequency", "eval_episodes", "log_frequency", "checkpoint_frequency",
               "num_threads", "track", "wandb_project_name", "wandb_entity", "resume")  # fmt: skip
EXIT_INTERRUPTED = 3  # SIGTERM or SIGINT: the resumable state was written, `--resume RUN_DIR` continues
VULKAN_HINT = (
    "no Vulkan device found (SAPIEN needs one even with rendering off); on Debian 12 install Mesa 25 from "
    "bookworm-backports: apt-get install -t bookworm-backports mesa-vulkan-drivers libvulkan1 (README)"
)
# (flags, requirement, test): each flag's value must pass its test, else a one-line error names flag and value
RULES = (
    (("total_timesteps", "buffer_size", "batch_size", "policy_frequency", "eval_frequency", "eval_episodes",
      "log_frequency", "num_threads", "num_envs", "num_eval_envs", "history_len", "lstm_hidden_size"),
     "must be positive", lambda v: v > 0),
    (("learning_starts", "checkpoint_frequency", "policy_noise", "noise_clip", "exploration_noise", "learning_rate"),
     "must be >= 0", lambda v: v >= 0),  # NaN fails too
    (("utd",), "must be positive and finite", lambda v: 0 < v < math.inf),
    (("gamma", "tau"), "must be in [0, 1]", lambda v: 0.0 <= v <= 1.0),
)  # fmt: skip


def default_threads() -> int:
    """--num-threads' default: OMP_NUM_THREADS when it is set (a grid, a Slurm job), else 1. Runs side by side are the
    common case (a seed grid from a shell loop), and two 2-thread runs on 2 cores ran 10x slower (BENCHMARKS.md)."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else 1


class UsageError(Exception):
    """Bad input: reported as one line and exit code 2."""


class DivergenceError(Exception):
    """A NaN or inf loss, or a non-finite action: reported as one line and exit code 1."""


class Interrupted(Exception):
    """SIGTERM or SIGINT: the step finished and the resumable state was written; exit code 3."""


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def validate_args(args: Args) -> None:
    for names, requirement, ok in RULES:
        for name in names:
            if not ok(getattr(args, name)):
                raise UsageError(f"{flag(name)} {requirement}, got {getattr(args, name)}")
    if args.buffer_size < args.batch_size:
        raise UsageError(f"--buffer-size ({args.buffer_size}) is smaller than --batch-size ({args.batch_size})")
    if args.obs_mode != "state":
        raise UsageError(f"--obs-mode {args.obs_mode}: only `state` observations are supported")
    # Adam's first step is about lr / (1 - beta1); beyond float32's range it cannot even be represented
    if not np.isfinite(args.learning_rate) or args.learning_rate / (1 - 0.9) > float(torch.finfo(torch.float32).max):
        raise UsageError(f"--learning-rate must be finite and at most 3.4e37, got {args.learning_rate}")
    if args.sim_backend == "gpu" and not torch.cuda.is_available():
        raise UsageError("--sim-backend gpu needs a CUDA GPU (none found); use --sim-backend cpu")


def check_finite(losses: dict, step: int) -> None:
    bad = [name for name, v in losses.items() if not torch.isfinite(v).all()]
    if bad:
        raise DivergenceError(f"{bad[0]} is {losses[bad[0]].item()} at global step {step}")


def check_action(action: torch.Tensor, who: str, step: int) -> None:
    # weights blown up by the last update are still finite; their first action is where NaN shows
    if not torch.isfinite(action).all():
        raise DivergenceError(f"the {who}'s action is non-finite at global step {step}")


class EnvGenerators(gym.Wrapper):
    """One CPU env, in its own process, whose random generators the main process reads and sets through the vector
    env (--resume): that process's torch, NumPy and Python generators and ManiSkill's (3.0.1) main and per-episode
    ones, which are what an unseeded reset draws the episode's initial state from. `reset_generators` holds them as
    they were before the current episode's reset: set back to those, the env's next reset starts that episode again
    (the same initial state, to the bit; the steps after it match until PhysX's dependence on the steps it ran
    before shows, typically a few steps into the gripper touching the cube)."""

    def __init__(self, env):
        super().__init__(env)
        self.reset_generators = None

    def reset(self, **kwargs):
        self.reset_generators = self.generators
        return self.env.reset(**kwargs)

    @property
    def generators(self) -> dict:
        base = self.env.unwrapped
        return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
                "episode": [rng.get_state() for rng in base._batched_episode_rng.rngs],
                "main": [rng.get_state() for rng in base._batched_main_rng.rngs]}  # fmt: skip

    @generators.setter
    def generators(self, state: dict) -> None:
        base = self.env.unwrapped
        torch.set_rng_state(state["torch"])
        np.random.set_state(state["numpy"])
        random.setstate(state["python"])
        for name, saved in [("_batched_episode_rng", state["episode"]), ("_batched_main_rng", state["main"])]:
            for rng, rng_state in zip(getattr(base, name).rngs, saved, strict=True):
                rng.set_state(rng_state)


def save_checkpoint(path: str, payload: dict) -> None:
    """Atomic: a crash mid-write never leaves a truncated file at `path` (write a temporary file, flush it to disk,
    rename it over `path`); the previous file stays whole until the new one is."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def buffer_state(buffer, fields: dict) -> dict:
    """A ring buffer's resumable state: its filled part (the slots below `count`: a ring fills from slot 0) as host
    tensors, and its pointer."""
    return {"ptr": buffer.ptr, "count": buffer.count, **fields}


def load_buffer_state(buffer, state: dict) -> None:
    for k in buffer.FIELDS:
        getattr(buffer, k)[: len(state[k])] = state[k]
    buffer.ptr, buffer.count = state["ptr"], state["count"]


def load_resume_state(run_path: str) -> dict:
    """The resumable state of an unfinished run (--resume), checked to be this script's."""
    path = os.path.join(run_path, RESUME_FILE)
    if not os.path.isdir(run_path):
        raise UsageError(f"--resume {run_path}: no such run directory")
    if not os.path.isfile(path):
        finished = os.path.isfile(os.path.join(run_path, "final.pt")) * " (the run finished: final.pt is there)"
        raise UsageError(f"--resume {run_path}: no {RESUME_FILE} to resume from{finished}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file is a usage error
        raise UsageError(f"--resume {run_path}: {RESUME_FILE} is not readable ({type(e).__name__})") from None
    if not isinstance(state, dict) or state.get("script") != os.path.basename(__file__):
        raise UsageError(f"--resume {run_path}: {RESUME_FILE} was not written by {os.path.basename(__file__)}")
    return state


def whole_steps(steps: int, num_envs: int) -> int:
    """Env steps rounded up to whole steps of all envs, so that global_step lands on the run's end."""
    return math.ceil(steps / num_envs) * num_envs


def check_resume_args(args: Args, state: dict) -> None:
    """A resumed run keeps its flags; RESUME_SAFE ones may change, as long as the steps already run still fit (the
    total rounded up to whole steps of all envs, as the run counts it)."""
    for name, saved in state["args"].items():
        if name not in RESUME_SAFE and getattr(args, name) != saved:
            raise UsageError(f"--resume {args.resume}: {flag(name)} {getattr(args, name)} contradicts the run's "
                             f"{saved}; only {', '.join(RESUME_SAFE[:-1])} may change")  # fmt: skip
    if whole_steps(args.total_timesteps, args.num_envs) < state["global_step"]:
        raise UsageError(f"--resume {args.resume}: --total-timesteps {args.total_timesteps} ends the run before step "
                         f"{state['global_step']}, where it stopped")  # fmt: skip


def versions() -> dict:
    out = {"torch": torch.__version__, "gymnasium": gym.__version__, "numpy": np.__version__,
           "python": sys.version.split()[0]}  # fmt: skip
    for name in ("mani_skill", "sapien"):
        try:
            out[name] = __import__(name).__version__
        except (ImportError, AttributeError):
            out[name] = "none"
    return out


class Run:
    """What main() needs besides the method: the run directory and its resume.pt, seeds and device, TensorBoard (and
    wandb), the progress line, SIGTERM/SIGINT, the checkpoint writes, and the envs (their processes) to close however
    the run ends."""

    def __init__(self, args: Args):
        validate_args(args)
        self.args, self.state = args, None  # state: the resumable state of the run that --resume continues
        if args.resume:
            self.state = load_resume_state(args.resume)
            check_resume_args(args, self.state)
            self.path = os.path.normpath(args.resume)
            for tmp in glob.glob(os.path.join(self.path, "*.pt.tmp*")):  # left by a process killed mid-write
                os.remove(tmp)
        else:
            name = f"{args.env_id}__{args.exp_name}__{args.seed}__{int(time.time())}"
            while os.path.exists(os.path.join(args.run_dir, name)):  # same seed started in the same second
                name += "_"
            self.path = os.path.join(args.run_dir, name)
        self.name = os.path.basename(self.path)
        random.seed(args.seed)
        np.random.seed(args.seed)
        torch.manual_seed(args.seed)
        if args.torch_deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # what cuBLAS needs to be deterministic
        torch.use_deterministic_algorithms(args.torch_deterministic)
        torch.backends.cudnn.deterministic = args.torch_deterministic
        self.device = torch.device("cuda" if torch.cuda.is_available() and (args.cuda or use_gpu_sim(args)) else "cpu")
        if self.device.type == "cpu":
            torch.set_num_threads(args.num_threads)
        self.sim = "gpu (physx_cuda)" if use_gpu_sim(args) else "cpu (physx_cpu, one process per env)"
        self.writer, self.stop, self.handlers, self.closing = None, [], {}, []

    def closes(self, envs: VecEnv) -> VecEnv:
        """Close these envs when the run ends, however it ends."""
        self.closing.append(envs)
        return envs

    def restore(self, learners: dict, rb: ReplayBuffer, envs: VecEnv):
        """--resume: learners, replay buffer and every generator as saved (the CPU env processes' too); the envs' first
        observations."""
        state = self.state
        for name, obj in learners.items():
            obj.load_state_dict(state[name])
        rb.load_state_dict(state["rb"])
        obs = envs.reset_from(state["env_generators"])  # at an episode start: the same episodes again
        random.setstate(state["python_rng"])
        np.random.set_state(state["numpy_rng"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        return obs

    def rng_state(self, envs: VecEnv, episode_step: torch.Tensor) -> dict:
        """Every generator's state: where every env has just started an episode, the env processes' as they were
        before those resets, to redo them; else a fresh episode starts (ManiSkill's mid-episode states are not
        saved)."""
        episode_start = bool((episode_step == 0).all())
        return {"episode_start": episode_start, "episode_step": episode_step.tolist(),
                "env_generators": envs.generators(episode_start), "python_rng": random.getstate(),
                "numpy_rng": np.random.get_state(), "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None}  # fmt: skip

    def start(self, global_step: int, total_steps: int, obs_dim: int, resume_state):
        """Open TensorBoard (and wandb), print the run's line, catch SIGTERM and SIGINT.
        resume_state() -> the loop's resumable state at the current step."""
        args, self.total_steps, self.resume_state = self.args, total_steps, resume_state
        if args.track:
            try:
                import wandb
            except ImportError:
                raise UsageError("--track needs wandb: pip install wandb") from None

            wandb.init(project=args.wandb_project_name, entity=args.wandb_entity, sync_tensorboard=True,
                       config=vars(args), name=self.name, id=self.name, resume="allow", save_code=True)  # fmt: skip
        from torch.utils.tensorboard import SummaryWriter

        if self.state is None:
            self.writer = SummaryWriter(self.path)
            table = {**asdict(args), **{f"version/{k}": v for k, v in versions().items()}, "device": str(self.device),
                     "sim": self.sim}  # fmt: skip
            self.writer.add_text(
                "hyperparameters", "|param|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in table.items())
            )
        else:  # TensorBoard drops what the interrupted run logged after its saved step, this run logs it anew
            # TensorBoard reads a run's event files in name order, and a name starts with the second it was created in
            events = glob.glob(os.path.join(self.path, "events.out.tfevents.*"))
            while int(time.time()) <= max((int(os.path.basename(f).split(".")[3]) for f in events), default=0):
                time.sleep(0.05)  # a resume in the same second as the last start: this file must sort after its files
            self.writer = SummaryWriter(self.path, purge_step=self.state["global_step"] + 1)
        self.start_step, self.start_time = global_step, time.time()
        if threading.current_thread() is threading.main_thread():  # signal handlers can only be set there
            self.handlers = {s: signal.signal(s, self.on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        state = self.state  # the first line once the signals are ours: a signal after it is answered with resume.pt
        if state is None:
            print(f"run {self.path}: steps 0..{total_steps} (env steps over {args.num_envs} envs), obs dim {obs_dim}, "
                  f"device {self.device}, sim {self.sim}", flush=True)  # fmt: skip
        else:
            redo = "; a signal stopped its evaluation, which runs again first" * bool(state.get("eval_pending"))
            print(f"resumed {self.path} at step {state['global_step']}{redo}", flush=True)
        if state is not None and not state["episode_start"]:
            print(f"resumed mid-episode: the {args.num_envs} interrupted episodes (up to {max(state['episode_step'])} "
                  "steps in) are not counted and every env starts a fresh one (environment states are not saved)",
                  flush=True)  # fmt: skip
        elif state is not None and state["env_generators"] is None:
            print("resumed at an episode start, but the GPU simulator's generators are not saved: every env starts "
                  "another episode than the interrupted run's would have", flush=True)  # fmt: skip
        return self

    def on_signal(self, signum, frame) -> None:
        """SIGTERM (Slurm preemption) or Ctrl-C: finish this step, write resume.pt, exit 3; a second one exits now."""
        if self.stop:
            os._exit(128 + signum)  # resume.pt, replaced only by whole files, is still the last good state
        self.stop.append(signal.Signals(signum).name)
        print(f"{self.stop[0]}: finishing the current step, then writing {RESUME_FILE} (again to quit at once)",
              file=sys.stderr, flush=True)  # fmt: skip

    def sps(self, global_step: int) -> int:
        return int((global_step - self.start_step) / (time.time() - self.start_time))

    def log(self, global_step: int, scalars: dict) -> None:
        for name, value in scalars.items():
            self.writer.add_scalar(name, value, global_step)

    def log_step(self, global_step: int, losses: dict) -> None:
        """After each step of all envs: every --log-frequency steps the losses (of its last update) and SPS."""
        if crossed(global_step, self.args.num_envs, self.args.log_frequency):
            self.log(global_step, {name: value.item() for name, value in losses.items()})
            self.log(global_step, {"charts/SPS": self.sps(global_step)})

    def report(self, global_step: int, episode_count: int, last_eval: dict) -> None:
        """An evaluation's results: to TensorBoard, and as the progress line."""
        self.log(global_step, {f"eval/{k}": v for k, v in last_eval.items()})
        evals = " ".join(f"eval_{k}={v:.2f}" for k, v in last_eval.items())
        print(f"step={global_step} SPS={self.sps(global_step)} episodes={episode_count} {evals}", flush=True)

    def evaluation(self, global_step: int):
        """The tick evaluate() calls every step of the eval envs: after SIGTERM/SIGINT the evaluation stops there,
        resume.pt marked so that the resumed run redoes it."""

        def tick(done: int, episodes: int) -> None:
            if self.stop:
                self.interrupt(global_step, eval_pending=True)

        return tick

    def save(self, name: str, payload: dict) -> None:
        save_checkpoint(os.path.join(self.path, name), {**payload, "args": asdict(self.args), "versions": versions()})

    def maybe_checkpoint(self, global_step: int) -> None:
        """resume.pt every --checkpoint-frequency steps and after a signal (then stop: Interrupted)."""
        every = self.args.checkpoint_frequency
        periodic = every and crossed(global_step, self.args.num_envs, every)
        if global_step < self.total_steps and (self.stop or periodic):
            self.write_resume()
            if self.stop:
                self.interrupt(global_step)

    def write_resume(self, eval_pending: bool = False) -> None:
        self.writer.flush()  # every event up to this step is on disk before the state that follows it
        self.save(RESUME_FILE, {"script": os.path.basename(__file__), "eval_pending": eval_pending,
                                **self.resume_state()})  # fmt: skip

    def interrupt(self, global_step: int, eval_pending: bool = False) -> None:
        if eval_pending:
            self.write_resume(eval_pending=True)
        raise Interrupted(f"{self.stop[0]} at step {global_step}: {RESUME_FILE} written; continue with:\n"
                          f"  python {os.path.relpath(__file__)} --resume {self.path}")  # fmt: skip

    def finish(self, name: str, payload: dict) -> None:
        """The run is over: its last checkpoint, and no resume.pt left to resume."""
        self.save(name, payload)
        if os.path.exists(os.path.join(self.path, RESUME_FILE)):
            os.remove(os.path.join(self.path, RESUME_FILE))
        print(f"done: checkpoint and TensorBoard events in {self.path}", flush=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        for envs in self.closing:
            envs.close()
        if self.writer is not None:
            self.writer.close()
        for sig, handler in self.handlers.items():  # last: a signal during the closing above is still ours
            signal.signal(sig, handler)


def cli() -> int:
    args = tyro.cli(Args)
    try:
        if args.resume:  # the run's own flags, with those given on this command line over them
            # threads come from this command line or environment, not from the interrupted run's
            saved = load_resume_state(args.resume)["args"]
            saved = {k: v for k, v in saved.items() if k not in ("num_threads", "resume")}
            args = tyro.cli(Args, default=Args(**saved, resume=args.resume))
        main(args)
    except UsageError as e:
        print(f"{os.path.basename(sys.argv[0])}: error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"{os.path.basename(sys.argv[0])}: interrupted: {e}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except DivergenceError as e:
        print(f"{os.path.basename(sys.argv[0])}: diverged: {e}; stopping, no checkpoint written", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    code = cli()
    if code == EXIT_INTERRUPTED:  # a second Ctrl-C while the interpreter shuts down quits at once, no traceback
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda signum, frame: os._exit(128 + signum))
    sys.exit(code)
