"""Transformer acceleration (Zelezetsky et al., "Accelerating Transformers in Online RL") on ManiSkill3 manipulation
(PushCube, PullCube, PickCube) with parallel environments.

Stage 1 (Algorithm 1): an MLP TD3 accelerator learns online and trains a transformer actor from a trajectory buffer T
by behavior cloning (Algorithm 2) and, optionally, critic ascent (Algorithm 3). Stage 2 (Algorithm 4): the transformer
becomes the TD3 actor, reusing the accelerator's critics, with a fresh, small replay buffer.

    python td3_accel_maniskill.py --env-id PushCube-v1 --sim-backend cpu --num-envs 2
    python td3_accel_maniskill.py --resume runs/RUN_DIR           # continue an interrupted run
    python td3_accel_maniskill.py --help

Steps are environment steps summed over the parallel envs (as in ManiSkill's baselines): one step of 50 envs is 50
steps. Every env has its own context window and its own column in the replay buffer, so windows never mix envs or
cross an episode boundary, also under auto-reset. Two simulators, same loop and same logs:
  gpu: ManiSkill's GPU-parallel envs in this process; observations, actions and buffers stay on the GPU (UNTESTED:
       written against ManiSkill 3.0.1's ManiSkillVectorEnv, never run, no GPU where this was written)
  cpu: one ManiSkill CPU env per process (CPUGymWrapper) in gymnasium's AsyncVectorEnv, same-step auto-reset

CleanRL-style: the method, top to bottom, then main() (Algorithm 1 followed by Algorithm 4). The last section,
"Plumbing", holds validation, checkpoints and resume (Run.restore: what a resumed run starts from), signals and
progress: a reader who stops before it has read the whole method.
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
    """Transformer acceleration on ManiSkill3 with parallel envs, in the paper's two stages:
    - stage 1: an MLP TD3 accelerator learns online, and the transformer is trained from it;
    - stage 2: the transformer takes over and is fine-tuned with TD3.
    (Steps count env steps summed over all envs.)

    The paper's algorithms as printed, where our defaults differ:
      --bc-frequency 1000 --bc-updates 40 --bc-buffer-size 1000 --bc-clear --bc-target behavior
      --bc-state-noise 0 --bc-dagger 0 --no-prefill --critic-warmup 0"""

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
    ("write the run's resumable state (networks, optimizers, replay buffer, T, RNGs, env generators) to "
     "RUN_DIR/resume.pt every this many env steps, replacing the previous one; 0: only on SIGTERM/SIGINT")
    resume: str | None = None
    ("continue the unfinished run in this run directory from its resume.pt, with its flags; only the total steps, "
     "evaluation, logging, checkpoint frequency and threads may be given anew. Where every env had just started an "
     "episode (e.g. --ignore-terminations at a multiple of the time limit x --num-envs) the same episodes start again "
     "(not an exact replay: PhysX's results depend on the steps it ran before); elsewhere every env starts a fresh one")

    # Environment and stage lengths
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
     "the time limit, so success_at_end is meaningful)")
    accel_steps: int = 500_000  # stage 1 length in env steps (summed over envs; rounded up to whole steps of all envs)
    finetune_steps: int = 500_000  # stage 2 length in env steps (summed over envs; rounded up likewise)
    accelerated_checkpoint: str | None = None  # skip stage 1: fine-tune from this accelerated.pt

    # TD3 (Table 1, ManiSkill)
    buffer_size: int = 10_000  # stage 2 (transformer) replay buffer size, in transitions over all envs
    accel_buffer_size: int = 50_000  # stage 1 (accelerator) replay buffer size, in transitions over all envs
    learning_starts: int = 600  # stage-1 env steps of random actions before learning (stage 2 learns at once)
    batch_size: int = 600  # minibatch size of the accelerator's TD3 updates (stage 1)
    finetune_batch_size: int = 256  # minibatch size of the transformer's TD3 updates (stage 2)
    utd: float = 0.5  # TD3 updates per env step (update-to-data ratio; not in the paper): 25 after a step of 50 envs
    gamma: float = 0.8  # the discount factor gamma
    tau: float = 0.01  # target smoothing coefficient
    policy_noise: float = 0.2  # the scale of the target policy smoothing noise
    noise_clip: float = 0.5  # the clip of the target policy smoothing noise
    exploration_noise: float = 0.1  # the scale of the Gaussian exploration noise (both stages)
    policy_frequency: int = 2  # the frequency (in TD3 updates) of delayed actor (and target) updates
    learning_rate: float = 3e-4  # Adam learning rate of every network

    # Transformer acceleration (Algorithms 1-3)
    bc_frequency: int = 8  # train the transformer every this many env steps (stage 1, after --learning-starts)
    bc_updates: int = 1  # gradient steps (minibatches drawn from T) at each transformer training round
    bc_batch_size: int | None = None  # minibatch size of the BC and critic-ascent steps (default --finetune-batch-size)
    bc_buffer_size: int = 10_000  # capacity of T: the accelerator's most recent (window, action) samples, all envs
    bc_clear: bool = False  # empty T after each training round (Algorithm 1 as printed)
    bc_target: Literal["behavior", "actor"] = "actor"
    ("BC target: the accelerator's current noise-free actor on T's stored (possibly noisy) state, relabelled at "
     "training time, or `behavior`: the action executed there (Algorithm 1 line 7: with its exploration noise), the "
     "label kept even when --bc-state-noise perturbs the stored state; in a --bc-dagger episode, where the transformer "
     "acted, the accelerator's noise-free action on the true state")
    bc_source: Literal["train", "eval"] = "train"
    ("fill T from the accelerator's training interaction or from its deterministic evaluation rollouts (`eval`: "
     "no --bc-dagger episodes, the accelerator drives every training episode)")
    bc_state_noise: float = 0.1
    ("store the window of s + N(0, sigma) in T (section 3.1; padding stays zero): with --bc-target actor the label "
     "is the accelerator's action on that noisy state, so the transformer also learns it a little off the visited "
     "states. 0: the states as visited")
    bc_dagger: float = 0.25
    ("the fraction of stage-1 training episodes (after --learning-starts; with --bc-source train only) in which the "
     "transformer acts, with exploration noise, instead of the accelerator (DAgger): T then holds the states its own "
     "errors lead to, labelled by the accelerator, which learns from them too, off-policy (RESULTS.md, Pendulum's "
     "swing-up). 0: the accelerator always acts. Drawn for each env at each of its episode starts")
    critic_ascent: bool = False  # also train the transformer by ascent on the critic Q1 (Algorithm 3)
    prefill: bool = True
    ("stage 2's replay buffer starts with the accelerator's most recent --buffer-size transitions; --no-prefill "
     "starts it empty (Algorithm 4)")
    critic_warmup: int = 1000
    ("stage 2: env steps in which only the critics learn before the transformer's actor updates start, so its first "
     "updates follow critics fitted to its own actions (RESULTS.md; 0: none, as in Algorithm 4)")

    # Transformer actor (Table 1)
    context_len: int = 3  # observations of the current episode the transformer reads
    num_layers: int = 1  # transformer encoder layers
    num_heads: int = 2  # attention heads
    dim_model: int = 256  # token width
    dim_feedforward: int = 512  # width of each encoder layer's feed-forward block
    dropout: float = 0.05  # dropout inside the encoder

    # Evaluation and logging
    eval_frequency: int = 10_000  # evaluate (deterministic, the eval envs, full episodes) every this many env steps
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
class QNetwork(nn.Module):
    """MLP critic Q(s, a) on the current observation (Table 1: 2 layers of 256)."""

    def __init__(self, obs_dim: int, act_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(obs_dim + act_dim, 256)
        self.fc2 = nn.Linear(256, 256)
        self.fc3 = nn.Linear(256, 1)

    def forward(self, x, a):
        x = F.relu(self.fc1(torch.cat([x, a], 1)))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class Actor(nn.Module):
    """MLP accelerator actor pi_phi(s), tanh-squashed to the action bounds."""

    def __init__(self, obs_dim: int, action_low: np.ndarray, action_high: np.ndarray):
        super().__init__()
        self.fc1 = nn.Linear(obs_dim, 256)
        self.fc2 = nn.Linear(256, 256)
        self.fc_mu = nn.Linear(256, len(action_low))
        self.register_buffer("action_scale", torch.tensor((action_high - action_low) / 2.0, dtype=torch.float32))
        self.register_buffer("action_bias", torch.tensor((action_high + action_low) / 2.0, dtype=torch.float32))

    def forward(self, x):
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return torch.tanh(self.fc_mu(x)) * self.action_scale + self.action_bias


class EncoderLayer(nn.Module):
    """Pre-LayerNorm transformer encoder layer (self-attention + feed-forward, residuals, dropout). With
    `last_only` only the last token is computed as a query: the actor reads nothing else, so the final layer
    skips the other tokens' attention outputs and feed-forward passes (same result, ~1.7x less compute)."""

    def __init__(self, dim_model, num_heads, dim_feedforward, dropout):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim_model)
        self.attn = nn.MultiheadAttention(dim_model, num_heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(dim_model)
        self.ff = nn.Sequential(nn.Linear(dim_model, dim_feedforward), nn.ReLU(), nn.Dropout(dropout),
                                nn.Linear(dim_feedforward, dim_model))  # fmt: skip
        self.dropout1, self.dropout2 = nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, h, padding_mask, last_only: bool = False):
        x = self.norm1(h)
        h = h[:, -1:] if last_only else h
        h = h + self.dropout1(self.attention(x, padding_mask, last_only))
        return h + self.dropout2(self.ff(self.norm2(h)))

    def attention(self, x, padding_mask, last_only: bool):
        """What self.attn(q, x, x, key_padding_mask=padding_mask, need_weights=False) computes, with its parameters
        (same state_dict), kept batch-first: its own (K, B, E) transposes and packed key/value split cost more
        copies than the products on the CPU (tests/test_speed_equivalence.py holds the two equal)."""
        (b, k, e), heads = x.shape, self.attn.num_heads
        w_q, w_kv = self.attn.in_proj_weight.split([e, 2 * e])
        b_q, b_kv = self.attn.in_proj_bias.split([e, 2 * e])
        q = F.linear(x[:, -1:] if last_only else x, w_q, b_q).view(b, -1, heads, e // heads).transpose(1, 2)
        key, value = F.linear(x, w_kv, b_kv).view(b, k, 2, heads, e // heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, key, value, attn_mask=~padding_mask[:, None, None],
                                             dropout_p=self.attn.dropout if self.training else 0.0)  # fmt: skip
        return self.attn.out_proj(out.transpose(1, 2).reshape(b, -1, e))


class TransformerActor(nn.Module):
    """pi_theta: reads the last `context_len` observations of the episode (one token each: linear embedding +
    learned positional embedding, left-padded), attends only to valid positions (padding is masked out of
    attention), and reads the action from the last (current) token, tanh-squashed to the action bounds."""

    def __init__(self, obs_dim, action_low, action_high, context_len, num_layers, num_heads, dim_model,
                 dim_feedforward, dropout):  # fmt: skip
        super().__init__()
        self.embed = nn.Linear(obs_dim, dim_model)
        self.pos_embed = nn.Parameter(torch.zeros(1, context_len, dim_model))
        nn.init.normal_(self.pos_embed, std=0.02)
        self.layers = nn.ModuleList(
            [EncoderLayer(dim_model, num_heads, dim_feedforward, dropout) for _ in range(num_layers)]
        )
        self.norm = nn.LayerNorm(dim_model)
        self.fc_mu = nn.Linear(dim_model, len(action_low))
        self.register_buffer("action_scale", torch.tensor((action_high - action_low) / 2.0, dtype=torch.float32))
        self.register_buffer("action_bias", torch.tensor((action_high + action_low) / 2.0, dtype=torch.float32))

    def forward(self, window, valid):
        # window: (B, K, obs_dim), valid: (B, K) bool; the last position is always valid
        h = self.embed(window) + self.pos_embed
        for i, layer in enumerate(self.layers):
            h = layer(h, ~valid, last_only=i == len(self.layers) - 1)
        h = self.norm(h[:, -1])
        return torch.tanh(self.fc_mu(h)) * self.action_scale + self.action_bias


def make_transformer(obs_dim, action_low, action_high, args: Args) -> TransformerActor:
    return TransformerActor(obs_dim, action_low, action_high, args.context_len, args.num_layers, args.num_heads,
                            args.dim_model, args.dim_feedforward, args.dropout)  # fmt: skip


@torch.no_grad()
def soft_update(net: nn.Module, target: nn.Module, tau: float) -> None:
    """theta' <- tau * theta + (1 - tau) * theta' (Algorithm 1 lines 17-18, Algorithm 2/3 line 5)."""
    # one foreach call: 3-5x faster than a lerp_ per parameter on the CPU (BENCHMARKS.md); same values
    torch._foreach_lerp_(list(target.parameters()), list(net.parameters()), tau)


def adam(params, lr: float) -> torch.optim.Adam:
    """Adam as one fused kernel over all parameters: the same update, ~4x faster than the default per-parameter loop
    on the CPU (BENCHMARKS.md, tests/test_speed_equivalence.py)."""
    return torch.optim.Adam(params, lr=lr, fused=True)


# ---------------------------------------------------------------------------------------------------------------
# Context windows and buffers (per env)
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


class TrajectoryBuffer:
    """T of Algorithm 1: the accelerator's most recent (window, valid, action) samples, a ring of fixed capacity
    (fresh data only: the oldest sample leaves as a new one arrives; `clear` empties it)."""

    FIELDS = ("windows", "valids", "actions")

    def __init__(self, capacity: int, context_len: int, obs_dim: int, act_dim: int, device):
        self.capacity = capacity
        self.windows = torch.zeros(capacity, context_len, obs_dim, device=device)
        self.valids = torch.zeros(capacity, context_len, dtype=torch.bool, device=device)
        self.actions = torch.zeros(capacity, act_dim, device=device)
        self.ptr, self.count = 0, 0

    def add(self, windows, valids, actions) -> None:
        """A batch of samples (one per env), in order; of more than the capacity only the newest are kept."""
        n = min(len(windows), self.capacity)
        idx = (self.ptr + torch.arange(n, device=self.windows.device)) % self.capacity
        self.windows[idx], self.valids[idx], self.actions[idx] = windows[-n:], valids[-n:], actions[-n:]
        self.ptr = (self.ptr + n) % self.capacity  # by what was stored: the pointer stays on the oldest sample
        self.count = min(self.count + n, self.capacity)

    def __len__(self) -> int:
        return self.count

    def clear(self) -> None:
        self.ptr, self.count = 0, 0

    def sample(self, batch_size: int):
        idx = torch.randint(0, self.count, (batch_size,), device=self.windows.device)
        return self.windows[idx], self.valids[idx], self.actions[idx]

    def state_dict(self) -> dict:
        return buffer_state(self, {k: getattr(self, k)[: self.count].to("cpu", copy=True) for k in self.FIELDS})

    def load_state_dict(self, state: dict) -> None:
        load_buffer_state(self, state)


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

    def recent(self, n: int) -> dict:
        """The most recent rows holding at least n transitions (all envs), oldest first, on the CPU: what the
        stage-2 buffer is prefilled with."""
        k = min(math.ceil(n / self.num_envs), self.count)
        idx = (self.ptr - k + torch.arange(k, device=self.device)) % self.rows
        return {key: getattr(self, key)[idx].cpu() for key in self.FIELDS}

    def extend(self, data: dict) -> None:
        """Append rows in order (their episode-step indices keep the windows of s and s' rebuildable)."""
        n = min(len(data["obs"]), self.rows)
        idx = (self.ptr + torch.arange(n, device=self.device)) % self.rows
        for key, value in data.items():
            getattr(self, key)[idx] = value[len(value) - n :].to(self.device)
        self.ptr, self.count = (self.ptr + n) % self.rows, min(self.count + n, self.rows)

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
def td3_update(update, data, actor_in, next_actor_in, actor, actor_target, qf1, qf2, qf1_target, qf2_target,
               q_optimizer, actor_optimizer, args: Args, train_actor: bool = True) -> dict:  # fmt: skip
    """One TD3 step (Algorithm 1 lines 8-19 for the accelerator, Algorithm 4 lines 5-14 for the transformer); `update`
    counts this stage's TD3 updates (delayed actor updates). actor_in / next_actor_in are the actor's inputs for s and
    s' (observations or context windows); the critics always read the current observation. With train_actor False
    only the critics (and their targets) learn: the stage-2 critic warm-up."""
    with torch.no_grad():
        noise = (torch.randn_like(data["actions"]) * args.policy_noise).clamp(-args.noise_clip, args.noise_clip)
        next_actions = actor_target(*next_actor_in) + noise * actor_target.action_scale
        next_actions = torch.max(torch.min(next_actions, actor.action_scale + actor.action_bias),
                                 actor.action_bias - actor.action_scale)  # fmt: skip
        next_q = torch.min(qf1_target(data["next_obs"], next_actions), qf2_target(data["next_obs"], next_actions))
        target_q = data["rewards"] + (1 - data["terminations"]) * args.gamma * next_q
    qf1_loss = F.mse_loss(qf1(data["obs"], data["actions"]), target_q)
    qf2_loss = F.mse_loss(qf2(data["obs"], data["actions"]), target_q)
    q_optimizer.zero_grad()
    (qf1_loss + qf2_loss).backward()
    q_optimizer.step()
    losses = {"losses/qf1_loss": qf1_loss.detach(), "losses/qf2_loss": qf2_loss.detach()}
    if update % args.policy_frequency == 0:
        if train_actor:
            # qf1 frozen for the actor loss: its weight gradients would be dropped unused by the next zero_grad
            qf1.requires_grad_(False)
            try:
                actor_loss = -qf1(data["obs"], actor(*actor_in)).mean()
                actor_optimizer.zero_grad()
                actor_loss.backward()
            finally:
                qf1.requires_grad_(True)
            actor_optimizer.step()
            soft_update(actor, actor_target, args.tau)
            losses["losses/actor_loss"] = actor_loss.detach()
        soft_update(qf1, qf1_target, args.tau)
        soft_update(qf2, qf2_target, args.tau)
    return losses


def train_transformer(trajectory: TrajectoryBuffer, transformer, transformer_target, optimizer, qf1, actor,
                      args: Args) -> dict:  # fmt: skip
    """Algorithm 1 line 12: `bc_updates` minibatch steps on T of behavior cloning (Algorithm 2) and, with
    --critic-ascent, ascent on Q1 (Algorithm 3), each followed by a target soft update; with --bc-clear T is then
    emptied. With --bc-target actor the targets are the accelerator's current actor on T's (possibly noisy) states."""
    transformer.train()
    bc_losses, ascent_qs = [], []
    for _ in range(args.bc_updates):
        windows, valids, targets = trajectory.sample(args.bc_batch_size or args.finetune_batch_size)
        if args.bc_target == "actor":
            with torch.no_grad():
                targets = actor(windows[:, -1])
        bc_loss = F.mse_loss(transformer(windows, valids), targets)  # Algorithm 2, lines 2-4
        optimizer.zero_grad()
        bc_loss.backward()
        optimizer.step()
        soft_update(transformer, transformer_target, args.tau)
        bc_losses.append(bc_loss.detach())
        if args.critic_ascent:  # Algorithm 3, lines 2-5
            qf1.requires_grad_(False)  # only the transformer learns here (qf1's gradient would be dropped unused)
            try:
                q = qf1(windows[:, -1], transformer(windows, valids)).mean()
                optimizer.zero_grad()
                (-q).backward()
            finally:
                qf1.requires_grad_(True)
            optimizer.step()
            soft_update(transformer, transformer_target, args.tau)
            ascent_qs.append(q.detach())
    transformer.eval()
    if args.bc_clear:
        trajectory.clear()
    out = {"losses/bc_loss": torch.stack(bc_losses).mean()}
    if ascent_qs:
        out["losses/critic_ascent_q"] = torch.stack(ascent_qs).mean()
    return out


# ---------------------------------------------------------------------------------------------------------------
# Acting and evaluation
def act(stage: int, global_step: int, obs, windows: EpisodeWindows, actor, transformer, envs: VecEnv, args: Args,
        dagger: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """Algorithm 1 line 5 / Algorithm 4 line 3, for all envs: the acting policy (the accelerator in stage 1, the
    transformer on each env's window in stage 2 and, in stage 1, in the envs whose `dagger` flag is set: their
    --bc-dagger episodes) plus Gaussian exploration noise; uniform random during stage 1's warm-up."""
    low, high = envs.low, envs.high
    if stage == 1 and global_step < args.learning_starts:
        return low + torch.rand(envs.num_envs, envs.act_dim, device=low.device) * (high - low)
    with torch.no_grad():
        if stage == 2:
            action = transformer(windows.obs, windows.valid)
        else:
            action = actor(obs)
            if dagger is not None and dagger.any():
                action = torch.where(dagger[:, None], transformer(windows.obs, windows.valid), action)
    noise = torch.randn_like(action) * (high - low) / 2 * args.exploration_noise
    return torch.max(torch.min(action + noise, high), low)


def draw_dagger(stage: int, global_step: int, done: torch.Tensor, dagger: torch.Tensor, args: Args) -> torch.Tensor:
    """The --bc-dagger flags after a step: each env whose episode starts now (`done`) draws whether the transformer
    drives it (no random draw when --bc-dagger is 0, in the warm-up, in stage 2, or with --bc-source eval: DAgger
    episodes feed T, which then fills from evaluations only); the others keep theirs."""
    if stage == 1 and args.bc_dagger > 0 and args.bc_source == "train" and global_step >= args.learning_starts:
        return torch.where(done, torch.rand(len(done), device=done.device) < args.bc_dagger, dagger)
    return dagger & ~done


def who_acted(stage: int, action: torch.Tensor, dagger: torch.Tensor) -> str:
    """check_action's `who` for a step whose actions are not all finite, named after the first env at fault: the
    transformer in stage 2 and in an env in a --bc-dagger episode (it acted there, not the accelerator), else the
    accelerator."""
    env = int((~torch.isfinite(action).all(1)).nonzero()[0, 0])
    return "transformer" if stage == 2 or dagger[env] else "accelerator"


@torch.no_grad()
def store_in_T(trajectory: TrajectoryBuffer, windows: EpisodeWindows, action, actor, args: Args,
               dagger: torch.Tensor | None = None) -> None:  # fmt: skip
    """Algorithm 1 line 7: store each env's (window of s, a) in T; with --bc-state-noise (section 3.1) the window of
    s + noise (padding stays zero). The label is read only with --bc-target behavior (`actor` relabels every sample
    when it trains, so the executed actions are kept as placeholders, without a forward pass or a host sync): the
    executed action, or in the envs in a --bc-dagger episode (`dagger`), where the transformer acted, the
    accelerator's noise-free action on the true s."""
    obs = windows.obs
    if args.bc_state_noise > 0:
        obs = obs + torch.randn_like(obs) * args.bc_state_noise * windows.valid[..., None]
    if args.bc_target == "behavior" and dagger is not None and dagger.any():
        action = torch.where(dagger[:, None], actor(windows.obs[:, -1]), action)
    trajectory.add(obs, windows.valid, action)


@torch.no_grad()
def evaluate(envs: VecEnv, policy, episodes: int, seed: int, context_len: int, step: int,
             trajectory: TrajectoryBuffer | None = None, tick=None) -> dict:  # fmt: skip
    """`episodes` deterministic episodes on the eval envs (which run to the time limit), --num-eval-envs at a time;
    policy(windows) -> actions. Returns the mean success_once (success at any step), success_at_end (at the last
    step) and undiscounted return. With `trajectory`, each (window, action) is stored in T (--bc-source eval).
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
            if trajectory is not None:
                trajectory.add(windows.obs[running], windows.valid[running], action[running])
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
# Training loop: Algorithm 1 (stage 1), then Algorithm 4 (stage 2), for all envs at once
def crossed(step: int, num_envs: int, every: int) -> int:
    """How many multiples of `every` the last step of all envs (step - num_envs, step] passed."""
    return step // every - (step - num_envs) // every


def whole_steps(steps: int, num_envs: int) -> int:
    """A stage's length rounded up to whole steps of all envs, so that global_step lands on its end."""
    return math.ceil(steps / num_envs) * num_envs


def main(args: Args, on_step=None) -> None:
    """Both stages. on_step, if given, is called with the loop's local variables after every step of all envs
    (the tests inspect buffers, windows and networks of the real loop through it)."""
    run = Run(args)  # checks the flags, reads resume.pt, seeds the generators, picks the device
    device, state = run.device, run.state
    with run:  # from here on the env processes, the writer and the bar are closed however the run ends
        # training episodes end at success unless --ignore-terminations; eval episodes always run to the time limit
        envs = run.closes(make_envs(args, args.num_envs, args.ignore_terminations, device))
        eval_envs = run.closes(make_envs(args, args.num_eval_envs, True, device))
        N, obs_dim, act_dim = envs.num_envs, envs.obs_dim, envs.act_dim
        low, high = envs.low.cpu().numpy(), envs.high.cpu().numpy()
        ckpt = load_checkpoint(args.accelerated_checkpoint, args, obs_dim, act_dim) if run.fine_tune_only else None

        # Algorithm 1, lines 1-3
        actor, actor_target = Actor(obs_dim, low, high).to(device), Actor(obs_dim, low, high).to(device)
        qf1, qf2 = QNetwork(obs_dim, act_dim).to(device), QNetwork(obs_dim, act_dim).to(device)
        qf1_target, qf2_target = QNetwork(obs_dim, act_dim).to(device), QNetwork(obs_dim, act_dim).to(device)
        transformer = make_transformer(obs_dim, low, high, args).to(device)
        transformer_target = make_transformer(obs_dim, low, high, args).to(device)
        for net, target in [(actor, actor_target), (qf1, qf1_target), (qf2, qf2_target),
                            (transformer, transformer_target)]:  # fmt: skip
            target.load_state_dict(net.state_dict())
        transformer.eval()  # acting is dropout-free; train mode only inside updates
        transformer_target.eval()
        q_optimizer = adam(list(qf1.parameters()) + list(qf2.parameters()), args.learning_rate)
        actor_optimizer = adam(actor.parameters(), args.learning_rate)
        transformer_optimizer = adam(transformer.parameters(), args.learning_rate)
        rb = ReplayBuffer(args.accel_buffer_size, N, obs_dim, act_dim, device)  # the accelerator's; replaced in stage 2
        trajectory = TrajectoryBuffer(args.bc_buffer_size, args.context_len, obs_dim, act_dim, device)
        windows = EpisodeWindows(N, args.context_len, obs_dim, device)
        learners = dict(actor=actor, actor_target=actor_target, qf1=qf1, qf2=qf2, qf1_target=qf1_target,
                        qf2_target=qf2_target, transformer=transformer, transformer_target=transformer_target,
                        q_optimizer=q_optimizer, actor_optimizer=actor_optimizer,
                        transformer_optimizer=transformer_optimizer)  # fmt: skip

        # stage lengths rounded up to whole steps of all envs, so that global_step lands on each stage's end
        global_step, stage, stage1_end = 0, 1, whole_steps(args.accel_steps, N)
        episode_count, updates, updates_owed, last_eval, stage_losses = 0, 0, 0.0, {}, {}
        episode_step = torch.zeros(N, dtype=torch.long, device=device)
        dagger = torch.zeros(N, dtype=torch.bool, device=device)  # the envs whose episode the transformer drives
        if ckpt is not None:  # fine-tune only: stage 1's networks, targets and critic optimizer
            global_step = stage1_end = load_accelerated(ckpt, learners, args)
        obs = envs.reset(seed=args.seed)
        if state is not None:  # --resume: the saved step, the RNGs last (building the networks above drew from them)
            rb = ReplayBuffer(args.accel_buffer_size if state["stage"] == 1 else args.buffer_size, N, obs_dim, act_dim,
                              device)  # fmt: skip
            obs = run.restore(learners, rb, trajectory, envs)
            keys = ("stage", "global_step", "episode_count", "updates", "updates_owed", "last_eval", "stage_losses")
            stage, global_step, episode_count, updates, updates_owed, last_eval, stage_losses = (state[k] for k in keys)
            dagger = torch.tensor(state["dagger"], dtype=torch.bool, device=device)  # each env goes on with its kind
            stage1_end = resumed_stage1_end(args, state)
        total_steps = stage1_end + whole_steps(args.finetune_steps, N)
        windows.reset(obs)
        episode_return, episode_success = torch.zeros(N, device=device), torch.zeros(N, dtype=torch.bool, device=device)

        def resume_state() -> dict:  # everything the loop needs to go on from this step (rb: the active stage's)
            return {"stage": stage, "global_step": global_step, "stage1_end": stage1_end,
                    "episode_count": episode_count, "updates": updates, "updates_owed": updates_owed,
                    "last_eval": last_eval, "stage_losses": stage_losses, "dagger": dagger.tolist(),
                    "rb": rb.state_dict(), "trajectory": trajectory.state_dict(), **run.rng_state(envs, episode_step),
                    **{k: v.state_dict() for k, v in learners.items()}}  # fmt: skip

        def networks(stage: int) -> dict:  # accelerated.pt (with stage 2's prefill: rows of all envs) or final.pt
            return {"script": os.path.basename(__file__), "stage": stage, "global_step": global_step,
                    "obs_dim": obs_dim, "act_dim": act_dim, **{k: v.state_dict() for k, v in learners.items()},
                    "recent_transitions": rb.recent(args.buffer_size) if stage == 1 else None}  # fmt: skip

        def evaluate_now() -> None:  # deterministic episodes of the accelerator (stage 1) and of the transformer
            seed = args.seed + 10_000 + global_step
            policies = {"transformer": lambda w: transformer(w.obs, w.valid)}
            if stage == 1:
                policies = {"accelerator": lambda w: actor(w.obs[:, -1]), **policies}
            # T gets only the trained accelerator's rollouts (--bc-source eval); such an evaluation is not interrupted
            fill = stage == 1 and args.bc_source == "eval" and global_step > args.learning_starts
            tick = run.evaluation(global_step, stage, interruptible=not fill)
            for who, policy in policies.items():
                result = evaluate(eval_envs, policy, args.eval_episodes, seed, args.context_len, global_step,
                                  trajectory if fill and who == "accelerator" else None, tick)  # fmt: skip
                last_eval.update({f"{who}_{key}": value for key, value in result.items()})
            run.report(global_step, stage, episode_count, last_eval)

        run.start(global_step, total_steps, stage1_end, resume_state)
        if state is not None and state.get("eval_pending"):  # a signal stopped this step's evaluation: redo it
            evaluate_now()
        while global_step < total_steps:
            if stage == 1 and global_step == stage1_end:
                # Algorithm 4 line 1: keep critics and targets, drop the accelerator's actor, new small replay buffer
                if not run.from_checkpoint:
                    run.save("accelerated.pt", networks(stage=1))
                trajectory.clear()
                for key in [k for k in last_eval if k.startswith("accelerator")]:  # stage-2 lines: the transformer
                    last_eval.pop(key)
                stage_losses, updates, updates_owed = {}, 0, 0.0
                # prefill: the accelerator's latest transitions, this run's or those stored in the checkpoint
                recent = rb.recent(args.buffer_size) if ckpt is None else ckpt.get("recent_transitions")
                stage, rb = 2, ReplayBuffer(args.buffer_size, N, obs_dim, act_dim, device)
                if args.prefill:
                    rb.extend(recent)
                transformer_optimizer = adam(transformer.parameters(), args.learning_rate)  # a fresh Adam
                learners["transformer_optimizer"] = transformer_optimizer
                obs = envs.reset()  # the accelerator's unfinished episodes are dropped, not logged
                windows.reset(obs)
                episode_step.zero_(), episode_return.zero_(), episode_success.zero_(), dagger.zero_()
                run.new_stage(global_step)

            action = act(stage, global_step, obs, windows, actor, transformer, envs, args, dagger)
            if stage == 1 and args.bc_source == "train" and global_step >= args.learning_starts:
                store_in_T(trajectory, windows, action, actor, args, dagger)
            if not torch.isfinite(action).all():  # the one host sync; who acted is looked up only then
                check_action(action, who_acted(stage, action, dagger), global_step)
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
                dagger = draw_dagger(stage, global_step, done, dagger, args)
            windows.push(next_obs, done)  # an env that reset starts its window afresh
            obs = next_obs

            step_losses = []  # every update's losses of this step: all are checked, the latest of each logged
            if stage == 1 and global_step > args.learning_starts:  # Algorithm 1 lines 8-19, --utd updates a step
                updates_owed += N * args.utd
                for _ in range(int(updates_owed)):
                    updates += 1
                    data = rb.sample(args.batch_size)
                    step_losses.append(td3_update(updates, data, (data["obs"],), (data["next_obs"],), actor,
                                                  actor_target, qf1, qf2, qf1_target, qf2_target, q_optimizer,
                                                  actor_optimizer, args))  # fmt: skip
                updates_owed -= int(updates_owed)
                for _ in range(crossed(global_step, N, args.bc_frequency) if len(trajectory) else 0):
                    step_losses.append(train_transformer(trajectory, transformer, transformer_target,
                                                         transformer_optimizer, qf1, actor, args))  # fmt: skip
            elif stage == 2:  # Algorithm 4 lines 5-14
                updates_owed += N * args.utd
                train_actor = global_step - stage1_end > args.critic_warmup
                for _ in range(int(updates_owed)):
                    updates += 1
                    data = rb.sample(args.finetune_batch_size, args.context_len)
                    transformer.train()
                    step_losses.append(td3_update(updates, data, (data["window"], data["valid"]),
                                                  (data["next_window"], data["next_valid"]), transformer,
                                                  transformer_target, qf1, qf2, qf1_target, qf2_target, q_optimizer,
                                                  transformer_optimizer, args, train_actor))  # fmt: skip
                    transformer.eval()
                updates_owed -= int(updates_owed)
            check_finite_updates(step_losses, global_step)
            losses = {name: value for update in step_losses for name, value in update.items()}
            stage_losses.update(losses)
            stage_end = global_step in (stage1_end, total_steps)
            run.log_step(global_step, stage, stage_losses if stage_end else losses, stage_end)
            if crossed(global_step, N, args.eval_frequency) or stage_end:  # both stages end with a measured success
                evaluate_now()
            if on_step is not None:
                on_step(locals())
            run.maybe_checkpoint(global_step)
        stage1_only = stage == 1 and not run.from_checkpoint  # --finetune-steps 0: stage 1 was the whole run
        run.finish("accelerated.pt" if stage1_only else "final.pt", networks(stage=1 if stage1_only else 2))


# ===============================================================================================================
# Plumbing: validation, checkpoints and resume, signals, progress and logging. Nothing below changes what is learned.
# ===============================================================================================================
# Architecture fields a stage-1 checkpoint must share with the run that fine-tunes it.
TRANSFORMER_FIELDS = ("context_len", "num_layers", "num_heads", "dim_model", "dim_feedforward")
# The resumable state of an unfinished run (Run.restore says what a resumed run starts from); removed when it ends.
RESUME_FILE = "resume.pt"
# Flags a resumed run may set anew (total steps, evaluation, logging, threads); all others must match the run's.
RESUME_SAFE = ("accel_steps", "finetune_steps", "eval_frequency", "eval_episodes", "log_frequency",
               "checkpoint_frequency", "num_threads", "track", "wandb_project_name", "wandb_entity",
               "resume")  # fmt: skip
EXIT_INTERRUPTED = 3  # SIGTERM or SIGINT: the resumable state was written, `--resume RUN_DIR` continues
VULKAN_HINT = (
    "no Vulkan device found (SAPIEN needs one even with rendering off); on Debian 12 install Mesa 25 from "
    "bookworm-backports: apt-get install -t bookworm-backports mesa-vulkan-drivers libvulkan1 (README)"
)
# (flags, requirement, test): each flag's value must pass its test, else a one-line error names flag and value
RULES = (
    (("accel_buffer_size", "buffer_size", "batch_size", "finetune_batch_size", "policy_frequency", "bc_frequency",
      "bc_updates", "bc_batch_size", "bc_buffer_size", "context_len", "num_layers", "num_heads", "dim_model",
      "dim_feedforward", "eval_frequency", "eval_episodes", "log_frequency", "num_threads", "num_envs",
      "num_eval_envs"), "must be positive", lambda v: v is None or v > 0),
    (("accel_steps", "finetune_steps", "learning_starts", "critic_warmup", "checkpoint_frequency", "policy_noise",
      "noise_clip", "exploration_noise", "bc_state_noise", "learning_rate"), "must be >= 0",
     lambda v: v >= 0),  # NaN fails too
    (("utd",), "must be positive and finite", lambda v: 0 < v < math.inf),
    (("gamma", "tau", "bc_dagger"), "must be in [0, 1]", lambda v: 0.0 <= v <= 1.0),
    (("dropout",), "must be in [0, 1)", lambda v: 0.0 <= v < 1.0),
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
    for name, batch in [("accel_buffer_size", "batch_size"), ("buffer_size", "finetune_batch_size")]:
        if getattr(args, name) < getattr(args, batch):
            raise UsageError(f"{flag(name)} ({getattr(args, name)}) is smaller than {flag(batch)} "
                             f"({getattr(args, batch)})")  # fmt: skip
    if args.obs_mode != "state":
        raise UsageError(f"--obs-mode {args.obs_mode}: only `state` observations are supported")
    if args.dim_model % args.num_heads:
        raise UsageError(f"--dim-model ({args.dim_model}) must be divisible by --num-heads ({args.num_heads})")
    # Adam's first step is about lr / (1 - beta1); beyond float32's range it cannot even be represented
    if not np.isfinite(args.learning_rate) or args.learning_rate / (1 - 0.9) > float(torch.finfo(torch.float32).max):
        raise UsageError(f"--learning-rate must be finite and at most 3.4e37, got {args.learning_rate}")
    if args.accelerated_checkpoint is not None and not args.resume and not os.path.isfile(args.accelerated_checkpoint):
        raise UsageError(f"--accelerated-checkpoint: no such file: {args.accelerated_checkpoint}")
    if args.accelerated_checkpoint is not None and args.finetune_steps == 0:
        raise UsageError("--accelerated-checkpoint skips stage 1, and --finetune-steps 0 leaves nothing to run")
    if args.sim_backend == "gpu" and not torch.cuda.is_available():
        raise UsageError("--sim-backend gpu needs a CUDA GPU (none found); use --sim-backend cpu")


def check_finite(losses: dict, step: int) -> None:
    bad = [name for name, v in losses.items() if not torch.isfinite(v).all()]
    if bad:
        raise DivergenceError(f"{bad[0]} is {losses[bad[0]].item()} at global step {step}")


def check_finite_updates(updates: list[dict], step: int) -> None:
    """check_finite on the losses of every update of a step (--num-envs x --utd TD3 updates, then the BC rounds), not
    only the last one's, with one host sync (a sync per update would stall a CUDA step); the first non-finite loss is
    named."""
    values = [v.reshape(-1) for losses in updates for v in losses.values()]
    if values and not torch.isfinite(torch.cat(values)).all():
        for losses in updates:
            check_finite(losses, step)


def check_action(action: torch.Tensor, who: str, step: int) -> None:
    # weights blown up by the last update are still finite; their first action is where NaN shows
    if not torch.isfinite(action).all():
        raise DivergenceError(f"the {who}'s action is non-finite at global step {step}")


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


def resumed_stage1_end(args: Args, state: dict) -> int:
    """Where stage 2 starts in a resumed run: --accel-steps may still move it while stage 1 runs."""
    return whole_steps(args.accel_steps, args.num_envs) if state["stage"] == 1 else state["stage1_end"]


def check_resume_args(args: Args, state: dict) -> None:
    """A resumed run keeps its flags; RESUME_SAFE ones may change, as long as the steps already run still fit (stage
    lengths rounded up to whole steps of all envs, as the run counts them)."""
    for name, saved in state["args"].items():
        if name not in RESUME_SAFE and getattr(args, name) != saved:
            raise UsageError(f"--resume {args.resume}: {flag(name)} {getattr(args, name)} contradicts the run's "
                             f"{saved}; only {', '.join(RESUME_SAFE[:-1])} may change")  # fmt: skip
    if args.accel_steps != state["args"]["accel_steps"]:
        if state["stage"] == 2 or args.accelerated_checkpoint:
            raise UsageError(f"--resume {args.resume}: --accel-steps cannot change, stage 1 is over")
        if whole_steps(args.accel_steps, args.num_envs) < state["global_step"]:
            raise UsageError(f"--resume {args.resume}: --accel-steps {args.accel_steps} is less than the "
                             f"{state['global_step']} steps stage 1 has already run")  # fmt: skip
    if resumed_stage1_end(args, state) + whole_steps(args.finetune_steps, args.num_envs) < state["global_step"]:
        raise UsageError(f"--resume {args.resume}: --finetune-steps {args.finetune_steps} ends the run before step "
                         f"{state['global_step']}, where it stopped")  # fmt: skip


def load_checkpoint(path: str, args: Args, obs_dim: int, act_dim: int) -> dict:
    """Load a stage-1 checkpoint and check it fits this run (env, controller, shapes, transformer architecture)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file is a usage error
        raise UsageError(f"--accelerated-checkpoint {path}: not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("script") != "td3_accel_maniskill.py":
        raise UsageError(f"--accelerated-checkpoint {path}: not a checkpoint written by td3_accel_maniskill.py")
    if ckpt.get("stage") != 1:
        raise UsageError(f"--accelerated-checkpoint {path} was written after stage {ckpt.get('stage')}; "
                         "give the accelerated.pt written at the end of stage 1")  # fmt: skip
    for name in ("env_id", "control_mode"):
        if ckpt["args"][name] != getattr(args, name):
            raise UsageError(f"--accelerated-checkpoint {path} was made with {flag(name)} {ckpt['args'][name]}, not "
                             f"{getattr(args, name)}")  # fmt: skip
    if (ckpt["obs_dim"], ckpt["act_dim"]) != (obs_dim, act_dim):
        raise UsageError(f"--accelerated-checkpoint {path}: obs/action dims {ckpt['obs_dim']}/{ckpt['act_dim']} "
                         f"do not match the env's {obs_dim}/{act_dim}")  # fmt: skip
    for name in TRANSFORMER_FIELDS:
        if ckpt["args"][name] != getattr(args, name):
            raise UsageError(f"--accelerated-checkpoint {path} has {flag(name)} {ckpt['args'][name]}, this run asks "
                             f"for {getattr(args, name)}")  # fmt: skip
    if args.prefill and ckpt["args"]["num_envs"] != args.num_envs:
        raise UsageError(f"--accelerated-checkpoint {path} holds transitions of {ckpt['args']['num_envs']} envs to "
                         f"prefill stage 2's buffer with, this run has --num-envs {args.num_envs}; match it or add "
                         "--no-prefill")  # fmt: skip
    return ckpt


def load_accelerated(ckpt: dict, learners: dict, args: Args) -> int:
    """Fine-tune only: stage 1's networks, targets and critic optimizer (not the dropped actor's Adam; the
    transformer's starts fresh, Algorithm 4), at this run's --learning-rate. Returns the step stage 1 ended at."""
    for name, obj in learners.items():
        if name not in ("actor_optimizer", "transformer_optimizer"):
            obj.load_state_dict(ckpt[name])
    for group in learners["q_optimizer"].param_groups:
        group["lr"] = args.learning_rate
    return ckpt["global_step"]


def duration(seconds: float) -> str:
    """12s, 7m05s, 3h12m"""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def eta_text(left: dict, measured: dict, min_steps: int = 100) -> str:
    """The time the steps left take, each phase's at the speed measured for it (steps, seconds), once it has run
    `min_steps`: "1h05m"; ">1h05m" while a phase with steps left has not been measured (e.g. stage 2 during stage 1:
    at least that long); "measuring" while no phase with steps left has."""
    known, unknown = 0.0, False
    for phase, steps in left.items():
        done, seconds = measured.get(phase, (0, 0.0))
        if steps > 0 and done < min_steps:
            unknown = True
        elif steps > 0:
            known += steps * seconds / done
    if unknown:
        return f">{duration(known)}" if known >= 1 else "measuring"
    return duration(known)


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
    wandb), the progress line and bar, SIGTERM/SIGINT, the checkpoint writes, and the envs (their processes) to close
    however the run ends."""

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
        self.fine_tune_only = args.accelerated_checkpoint is not None and self.state is None
        self.from_checkpoint = self.state["from_checkpoint"] if self.state else args.accelerated_checkpoint is not None
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
        self.writer, self.bar, self.stop, self.handlers, self.closing = None, None, [], {}, []

    def closes(self, envs: VecEnv) -> VecEnv:
        """Close these envs when the run ends, however it ends."""
        self.closing.append(envs)
        return envs

    def restore(self, learners: dict, rb: ReplayBuffer, trajectory: TrajectoryBuffer, envs: VecEnv):
        """--resume: learners, buffers and every generator as saved; the envs' first observations. Where every env had
        just started an episode (all ended in the same step: with --ignore-terminations every time limit x --num-envs
        steps), each CPU env process gets its generators back as they were before that reset and the same episodes
        start again, to the bit; the run still drifts apart from an uninterrupted one later, as PhysX's results depend
        on the steps a simulator ran before (measured: within a few steps of the gripper touching the cube; envs
        without that history, the tests' fake ones, resume exactly). Elsewhere, and on the GPU simulator (whose
        generators are not saved), the unfinished episodes are dropped (not logged) and every env starts a fresh one."""
        state = self.state
        for name, obj in learners.items():
            obj.load_state_dict(state[name])
        rb.load_state_dict(state["rb"])
        trajectory.load_state_dict(state["trajectory"])
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

    def start(self, global_step: int, total_steps: int, stage1_end: int, resume_state):
        """Open TensorBoard (and wandb), print the run's line, start the bar, catch SIGTERM and SIGINT.
        resume_state() -> the loop's resumable state at the current step."""
        args, self.total_steps, self.stage1_end = self.args, total_steps, stage1_end
        self.resume_state, self.measured, self.clock = resume_state, {}, (global_step, time.time())
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
        self.new_stage(global_step)
        if threading.current_thread() is threading.main_thread():  # signal handlers can only be set there
            self.handlers = {s: signal.signal(s, self.on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        state = self.state  # the first line once the signals are ours: a signal after it is answered with resume.pt
        if state is None:
            print(f"run {self.path}: steps {global_step}..{total_steps} (env steps over {args.num_envs} envs), stage 2 "
                  f"from step {stage1_end}, device {self.device}, sim {self.sim}", flush=True)  # fmt: skip
        else:
            redo = "; a signal stopped its evaluation, which runs again first" * bool(state.get("eval_pending"))
            print(f"resumed {self.path} at step {state['global_step']} (stage {state['stage']}){redo}", flush=True)
        if state is not None and not state["episode_start"]:
            print(f"resumed mid-episode: the {args.num_envs} interrupted episodes (up to {max(state['episode_step'])} "
                  "steps in) are not counted and every env starts a fresh one (environment states are not saved)",
                  flush=True)  # fmt: skip
        elif state is not None and state["env_generators"] is None:
            print("resumed at an episode start, but the GPU simulator's generators are not saved: every env starts "
                  "another episode than the interrupted run's would have", flush=True)  # fmt: skip
        if sys.stdout.isatty():  # a live bar on a terminal; a log file gets one line per evaluation
            from tqdm import tqdm

            # tqdm's own remaining time would extrapolate the random warm-up: the postfix carries eta() instead
            form = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}, {rate_fmt}{postfix}]"
            self.bar = tqdm(total=total_steps, initial=global_step, unit="step", dynamic_ncols=True, bar_format=form)
        return self

    def on_signal(self, signum, frame) -> None:
        """SIGTERM (Slurm preemption) or Ctrl-C: finish this step, write resume.pt, exit 3; a second one exits now."""
        if self.stop:
            os._exit(128 + signum)  # resume.pt, replaced only by whole files, is still the last good state
        self.stop.append(signal.Signals(signum).name)
        # on a line of its own, not after the bar's
        print("\n" * bool(self.bar) + f"{self.stop[0]}: finishing the current step, then writing {RESUME_FILE} "
              "(again to quit at once)", file=sys.stderr, flush=True)  # fmt: skip

    def new_stage(self, global_step: int) -> None:
        self.stage_start_step, self.stage_start_time = global_step, time.time()

    def sps(self, global_step: int) -> float:
        return (global_step - self.stage_start_step) / (time.time() - self.stage_start_time)

    def bounds(self) -> dict:
        """The parts of the run that go at their own speeds: random actions, stage 1's learning, the critics alone
        (--critic-warmup), stage 2's full updates; each as its [first, last) step."""
        start, warm = (self.stage1_end, self.stage1_end) if self.from_checkpoint else (0, self.args.learning_starts)
        critics = min(self.stage1_end + self.args.critic_warmup, self.total_steps)
        return {"random": (start, warm), "stage 1": (warm, self.stage1_end),
                "critic warm-up": (self.stage1_end, critics), "stage 2": (critics, self.total_steps)}  # fmt: skip

    def phase(self, step: int) -> str:
        return next((k for k, (lo, hi) in self.bounds().items() if lo <= step < hi), "stage 2")

    def tick_clock(self, global_step: int) -> None:
        """Charge the wall time since the last call (steps, evaluations, checkpoints) to the phase of these steps."""
        (last_step, last_time), now, phase = self.clock, time.time(), self.phase(self.clock[0])
        steps, seconds = self.measured.get(phase, (0, 0.0))
        self.measured[phase] = (steps + global_step - last_step, seconds + now - last_time)
        self.clock = (global_step, now)

    def eta(self, global_step: int) -> str:
        """eta_text of the steps each phase has left, at the speed this process measured for it."""
        left = {k: max(0, hi - max(lo, global_step)) for k, (lo, hi) in self.bounds().items()}
        return eta_text(left, self.measured)

    def log(self, global_step: int, scalars: dict) -> None:
        for name, value in scalars.items():
            self.writer.add_scalar(name, value, global_step)

    def log_step(self, global_step: int, stage: int, losses: dict, stage_end: bool) -> None:
        """After each step of all envs: the bar, and every --log-frequency steps and at a stage's end the losses and
        SPS."""
        self.tick_clock(global_step)
        if self.bar is not None:
            self.bar.update(self.args.num_envs)
            if crossed(global_step, self.args.num_envs, 100):
                self.bar.set_postfix_str(f"stage {stage}, eta {self.eta(global_step)}", refresh=False)
        if crossed(global_step, self.args.num_envs, self.args.log_frequency) or stage_end:
            self.log(global_step, {name: value.item() for name, value in losses.items()})
            self.log(global_step, {"charts/SPS": int(self.sps(global_step)), "charts/stage": stage})

    def report(self, global_step: int, stage: int, episode_count: int, last_eval: dict) -> None:
        """An evaluation's results: to TensorBoard, and as the progress line (the bar's postfix on a terminal)."""
        self.log(global_step, {f"eval/{k}": v for k, v in last_eval.items()})
        evals = " ".join(f"{k}={v:.2f}" for k, v in last_eval.items())
        self.tick_clock(global_step)  # the evaluation's time belongs to this phase
        eta, sps = self.eta(global_step), int(self.sps(global_step))
        line = f"step={global_step} stage={stage} SPS={sps} eta={eta} episodes={episode_count} {evals}"
        if self.bar is None:
            print(line, flush=True)
        else:
            self.bar.write(line)
            self.bar.set_postfix_str(f"stage {stage}, eta {eta}")

    def evaluation(self, global_step: int, stage: int, interruptible: bool = True):
        """The tick evaluate() calls every step of the eval envs: the bar shows how far the evaluation is, its clock
        going on; after SIGTERM/SIGINT an interruptible one stops there, resume.pt marked so that the resumed run
        redoes it."""
        start, shown = time.time(), [0.0]

        def tick(done: int, episodes: int) -> None:
            if self.stop and interruptible:
                self.interrupt(global_step, eval_pending=True)
            if self.bar is not None and time.time() - shown[0] > 0.5:
                shown[0] = time.time()
                self.bar.set_postfix_str(f"stage {stage}, evaluating: {done}/{episodes} episodes done, "
                                         f"{duration(shown[0] - start)}")  # fmt: skip

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
        self.save(RESUME_FILE, {"script": os.path.basename(__file__), "from_checkpoint": self.from_checkpoint,
                                "eval_pending": eval_pending, **self.resume_state()})  # fmt: skip

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
        print(f"done: checkpoints and TensorBoard events in {self.path}", flush=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()
        for envs in self.closing:
            envs.close()
        if self.writer is not None:
            self.writer.close()
        for sig, handler in self.handlers.items():  # last: a signal during the closing above is still ours
            signal.signal(sig, handler)


def cli() -> int:
    if any(a.split("=")[0] in ("--total-timesteps", "--total_timesteps") for a in sys.argv[1:]):  # CleanRL's habit
        print(f"{os.path.basename(sys.argv[0])}: error: --total-timesteps: this script runs two stages, give their "
              "lengths: --accel-steps (stage 1) and --finetune-steps (stage 2)", file=sys.stderr)  # fmt: skip
        return 2
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
        print(f"{os.path.basename(sys.argv[0])}: diverged: {e}; stopping, checkpoints already written are intact",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    code = cli()
    if code == EXIT_INTERRUPTED:  # a second Ctrl-C while the interpreter shuts down quits at once, no traceback
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda signum, frame: os._exit(128 + signum))
    sys.exit(code)
