"""Transformer acceleration (Zelezetsky et al., "Accelerating Transformers in Online RL") on Gymnasium MuJoCo.

Stage 1 (Algorithm 1): an MLP TD3 accelerator learns online and trains a transformer actor from a trajectory buffer T
by behavior cloning (Algorithm 2) and, optionally, critic ascent (Algorithm 3). Stage 2 (Algorithm 4): the transformer
becomes the TD3 actor, reusing the accelerator's critics, with a fresh, small replay buffer.

    python td3_accel_mujoco.py --env-id Ant-v4 --buffer-size 15000
    python td3_accel_mujoco.py --resume runs/RUN_DIR           # continue an interrupted run
    python td3_accel_mujoco.py --help

CleanRL-style: the method, top to bottom, then main() (Algorithm 1 followed by Algorithm 4). The last section,
"Plumbing", holds validation, checkpoints and resume, signals and progress: a reader who stops before it has read
the whole method.
"""

import glob
import os
import random
import signal
import sys
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Literal

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro

# The paper's MuJoCo tasks are v4: gymnasium's notice that v4 is out of date would open every run (README)
warnings.filterwarnings("ignore", message=r".*The environment \w+-v4 is out of date")


# tyro keeps a docstring's line breaks in --help, so a long help text is one string split in parentheses
# fmt: off
@dataclass
class Args:
    """Transformer acceleration on Gymnasium MuJoCo, in the paper's two stages:
    - stage 1: an MLP TD3 accelerator learns online, and the transformer is trained from it;
    - stage 2: the transformer takes over and is fine-tuned with TD3.

    The paper's algorithms as printed, where our defaults differ (the transfer study in RESULTS.md):
      --bc-frequency 1000 --bc-updates 40 --bc-buffer-size 1000 --bc-clear --bc-target behavior
      --bc-state-noise 0 --bc-dagger 0 --no-prefill --critic-warmup 0"""

    exp_name: str = os.path.basename(__file__)[: -len(".py")]  # experiment name (part of the run directory's)
    seed: int = 1  # seed of the experiment
    torch_deterministic: bool = True
    ("if toggled, deterministic torch algorithms (`torch.use_deterministic_algorithms`, cuDNN deterministic, "
     "and on CUDA the cuBLAS workspace setting they need)")
    cuda: bool = True  # if toggled, cuda will be used when available
    num_threads: int = field(default_factory=lambda: default_threads())
    ("CPU threads for torch when no GPU is used; default: OMP_NUM_THREADS if set, else 1 (runs side by side "
     'stay fast; BENCHMARKS.md, "Runs side by side"). A lone run on an idle 2-core machine may take 2')
    track: bool = False  # if toggled, this experiment will be tracked with Weights and Biases
    wandb_project_name: str = "transformer-acceleration"  # the wandb's project name
    wandb_entity: str | None = None  # the entity (team) of wandb's project
    capture_video: bool = False  # record videos of training episodes (videos/, needs moviepy)
    run_dir: str = "runs"  # where run directories (TensorBoard events, checkpoints) are created
    checkpoint_frequency: int = 50_000
    ("write the run's resumable state (networks, optimizers, replay buffer, T, RNGs) to RUN_DIR/resume.pt every this "
     "many environment steps, replacing the previous one; 0: only on SIGTERM/SIGINT")
    resume: str | None = None
    ("continue the unfinished run in this run directory from its resume.pt, with its flags; only the total steps, "
     "evaluation, logging, checkpoint frequency and threads may be given anew")

    # Environment and stage lengths
    env_id: str = "HalfCheetah-v4"  # the id of a Gymnasium MuJoCo environment with a Box action space
    accel_steps: int = 500_000  # stage 1 length in environment steps (accelerator learns, transformer is accelerated)
    finetune_steps: int = 500_000  # stage 2 length in environment steps (transformer fine-tuned online)
    accelerated_checkpoint: str | None = None  # skip stage 1: fine-tune from this accelerated.pt

    # TD3 (Table 1, MuJoCo)
    buffer_size: int = 100_000  # stage 2 (transformer) replay buffer size
    accel_buffer_size: int = 500_000  # stage 1 (accelerator) replay buffer size
    learning_starts: int = 25_000  # stage-1 steps of random actions before learning (stage 2 learns at once)
    batch_size: int = 256  # minibatch size of every TD3, BC and critic-ascent update
    gamma: float = 0.99  # the discount factor gamma
    tau: float = 0.005  # target smoothing coefficient
    policy_noise: float = 0.2  # the scale of the target policy smoothing noise
    noise_clip: float = 0.5  # the clip of the target policy smoothing noise
    exploration_noise: float = 0.1  # the scale of the Gaussian exploration noise (both stages)
    policy_frequency: int = 2  # the frequency of delayed actor (and target) updates
    learning_rate: float = 3e-4  # Adam learning rate of every network

    # Transformer acceleration (Algorithms 1-3); the defaults keep the transformer close to its accelerator
    bc_frequency: int = 8  # train the transformer every this many environment steps (stage 1, after --learning-starts)
    bc_updates: int = 1  # gradient steps (minibatches drawn from T) at each transformer training round
    bc_batch_size: int | None = None  # minibatch size of the BC and critic-ascent steps (default: --batch-size)
    bc_buffer_size: int = 10_000  # capacity of T: it holds only the accelerator's most recent (window, action) samples
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
    ("store the window of s + N(0, sigma) in T (section 3.1; padding stays zero), so the transformer also learns "
     "a little off the visited states, where its own errors take it (RESULTS.md, Pendulum). 0: the states as visited")
    bc_dagger: float = 0.25
    ("the fraction of stage-1 training episodes (after --learning-starts; with --bc-source train only) in which the "
     "transformer acts, with exploration noise, instead of the accelerator (DAgger): T then holds the states its own "
     "errors lead to, labelled by the accelerator, which learns from them too, off-policy (RESULTS.md, Pendulum's "
     "swing-up). 0: the accelerator always acts")
    critic_ascent: bool = False  # also train the transformer by ascent on the critic Q1 (Algorithm 3)
    prefill: bool = True
    ("stage 2's replay buffer starts with the accelerator's most recent --buffer-size transitions (the critics "
     "keep learning from broad data while the transformer's own arrive); --no-prefill starts it empty (Algorithm 4)")
    critic_warmup: int = 1000
    ("stage 2: steps in which only the critics learn before the transformer's actor updates start, so its first "
     "updates follow critics fitted to its own actions (RESULTS.md; 0: none, as in Algorithm 4)")

    # Transformer actor (Table 1)
    context_len: int = 3  # observations of the current episode the transformer reads
    num_layers: int = 1  # transformer encoder layers
    num_heads: int = 2  # attention heads
    dim_model: int = 256  # token width
    dim_feedforward: int = 512  # width of each encoder layer's feed-forward block
    dropout: float = 0.05  # dropout inside the encoder

    # Evaluation, logging, speed
    eval_frequency: int = 10_000  # evaluate (deterministic actions, separate env) every this many environment steps
    eval_episodes: int = 5  # episodes per evaluation
    log_frequency: int = 1000  # log losses and SPS every this many environment steps
    compile: bool = False
    ("torch.compile the losses of the TD3, BC and critic-ascent updates (forward and backward), on CUDA as CUDA "
     "graphs (mode reduce-overhead); the first updates take a while to compile. Same updates to float32 rounding")
# fmt: on


def make_env(env_id: str, seed: int, capture_video: bool = False, video_dir: str = ""):
    """A single (non-vector) env: episode ends are handled in the main loop, no autoreset semantics."""
    try:
        env = gym.make(env_id, render_mode="rgb_array" if capture_video else None)
    except gym.error.Error as e:
        raise UsageError(f"--env-id {env_id}: {e}") from None
    if not isinstance(env.action_space, gym.spaces.Box):
        raise UsageError(f"--env-id {env_id}: action space {env.action_space} is not continuous (Box)")
    if not isinstance(env.observation_space, gym.spaces.Box) or len(env.observation_space.shape) != 1:
        raise UsageError(f"--env-id {env_id}: observation space {env.observation_space} is not a flat Box")
    if capture_video:
        env = gym.wrappers.RecordVideo(env, video_dir)
    env.action_space.seed(seed)
    return env


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
# Context windows and buffers
class EpisodeWindow:
    """The last `context_len` observations of the current episode, left-padded; never crosses an episode."""

    def __init__(self, context_len: int, obs_dim: int):
        self.obs = np.zeros((context_len, obs_dim), dtype=np.float32)
        self.valid = np.zeros(context_len, dtype=bool)

    def reset(self, obs) -> None:
        self.obs[:] = 0.0
        self.valid[:] = False
        self.push(obs)

    def push(self, obs) -> None:
        self.obs[:-1] = self.obs[1:]
        self.valid[:-1] = self.valid[1:]
        self.obs[-1] = obs
        self.valid[-1] = True


class TrajectoryBuffer:
    """T of Algorithm 1: the accelerator's most recent (window, valid, action) samples, a ring of fixed capacity
    (fresh data only: the oldest sample leaves as a new one arrives; `clear` empties it)."""

    FIELDS = ("windows", "valids", "actions")

    def __init__(self, capacity: int, context_len: int, obs_dim: int, act_dim: int):
        self.capacity = capacity
        self.windows = np.zeros((capacity, context_len, obs_dim), dtype=np.float32)
        self.valids = np.zeros((capacity, context_len), dtype=bool)
        self.actions = np.zeros((capacity, act_dim), dtype=np.float32)
        self.ptr, self.count = 0, 0

    def add(self, window: np.ndarray, valid: np.ndarray, action: np.ndarray) -> None:
        self.windows[self.ptr], self.valids[self.ptr], self.actions[self.ptr] = window, valid, action
        self.ptr = (self.ptr + 1) % self.capacity
        self.count = min(self.count + 1, self.capacity)

    def __len__(self) -> int:
        return self.count

    def clear(self) -> None:
        self.ptr, self.count = 0, 0

    def sample(self, batch_size: int, device):
        idx = np.random.randint(0, self.count, size=batch_size)
        return tuple(torch.as_tensor(getattr(self, k)[idx], device=device) for k in self.FIELDS)

    def state_dict(self) -> dict:
        return buffer_state(self, {k: torch.from_numpy(getattr(self, k)[: self.count]) for k in self.FIELDS})

    def load_state_dict(self, state: dict) -> None:
        load_buffer_state(self, state)


class ReplayBuffer:
    """Ring buffer of (s, a, r, s', terminated) with the step index of s inside its episode, enough to rebuild the
    context windows of s and s' for any sampled transition without storing windows. Kept on the training device (CPU
    or GPU) as one tensor, a row per transition, the fields column views of it (episode_step as float32, exact below
    2^24): add() copies one row, sample() gathers transitions and windows where they are. Indices are drawn by
    numpy's generator, or with `torch_rng` (the CUDA path) by torch's on the device, with no host sync."""

    FIELDS = ("obs", "next_obs", "actions", "rewards", "terminations", "episode_step")

    def __init__(self, size: int, obs_dim: int, act_dim: int, device, torch_rng: bool = False):
        self.size, self.device, self.torch_rng = size, torch.device(device), torch_rng
        widths = dict(obs=obs_dim, next_obs=obs_dim, actions=act_dim, rewards=0, terminations=0, episode_step=0)
        self.rows = torch.zeros(size, sum(max(w, 1) for w in widths.values()), device=self.device)
        start = 0
        for k, w in widths.items():  # 0: a 1-D field
            setattr(self, k, self.rows[:, start : start + w] if w else self.rows[:, start])
            start += max(w, 1)
        self.ptr, self.count = 0, 0

    def add(self, obs, next_obs, action, reward, terminated, episode_step) -> None:
        row = np.concatenate([obs, next_obs, action, [reward, terminated, episode_step]], dtype=np.float32)
        self.rows[self.ptr] = torch.from_numpy(row)
        self.ptr = (self.ptr + 1) % self.size
        self.count = min(self.count + 1, self.size)

    def windows(self, idx: torch.Tensor, context_len: int):
        """Windows of s and s' for transitions idx: a position is valid if it lies in the same episode and has
        not been overwritten. The window of s' is that of s shifted by one, ending in s' (the true final
        observation at a time-limit truncation or termination)."""
        idx = torch.as_tensor(idx, device=self.device)
        offsets = torch.arange(context_len - 1, -1, -1, device=self.device)  # position j: `offsets[j]` steps back
        src = (idx[:, None] - offsets) % self.size  # torch's % of a negative int is Python's
        age = (self.ptr - 1 - idx) % self.size  # 0 for the newest entry
        valid = (self.episode_step[idx][:, None] >= offsets) & (age[:, None] + offsets <= self.count - 1)
        window = self.obs[src] * valid[..., None]
        next_window = torch.cat([window[:, 1:], self.next_obs[idx][:, None]], 1)
        return window, valid, next_window, torch.cat([valid[:, 1:], valid.new_ones(len(idx), 1)], 1)

    def sample(self, batch_size: int, context_len: int = 0) -> dict:
        # with replacement, so stage 2 can learn from its first transition (learning starts 0)
        if self.torch_rng:
            return self.gather(torch.randint(0, self.count, (batch_size,), device=self.device), context_len)
        return self.gather(np.random.randint(0, self.count, size=batch_size), context_len)

    def gather(self, idx, context_len: int = 0) -> dict:
        idx = torch.as_tensor(idx, device=self.device)  # numpy's draw on the CPU path
        data = dict(obs=self.obs[idx], next_obs=self.next_obs[idx], actions=self.actions[idx],
                    rewards=self.rewards[idx, None], terminations=self.terminations[idx, None])  # fmt: skip
        if context_len:
            data["window"], data["valid"], data["next_window"], data["next_valid"] = self.windows(idx, context_len)
        return data

    def fields(self, idx) -> dict:
        """The fields at idx, copied to the host (episode_step as int64)."""
        return {k: getattr(self, k)[idx].to("cpu", torch.int64 if k == "episode_step" else torch.float32, copy=True)
                for k in self.FIELDS}  # fmt: skip

    def recent(self, n: int) -> dict:
        """The n most recent transitions, oldest first: what the stage-2 buffer is prefilled with."""
        idx = (self.ptr - min(n, self.count) + np.arange(min(n, self.count))) % self.size
        return {k: v.numpy() for k, v in self.fields(torch.as_tensor(idx, device=self.device)).items()}

    def extend(self, data: dict) -> None:
        """Append transitions in order (their episode-step indices keep the windows of s and s' rebuildable)."""
        n = min(len(data["obs"]), self.size)
        idx = torch.as_tensor((self.ptr + np.arange(n)) % self.size, device=self.device)
        for k, v in data.items():
            getattr(self, k)[idx] = torch.as_tensor(v[len(v) - n :], dtype=torch.float32, device=self.device)
        self.ptr, self.count = (self.ptr + n) % self.size, min(self.count + n, self.size)

    def state_dict(self) -> dict:
        return buffer_state(self, self.fields(slice(0, self.count)))

    def load_state_dict(self, state: dict) -> None:
        load_buffer_state(self, state)  # assigning a host tensor into a view copies it to the device


# ---------------------------------------------------------------------------------------------------------------
# Losses and updates
def critic_losses(data: dict, noise, next_actor_in, actor_target, qf1, qf2, qf1_target, qf2_target, gamma: float):
    """The critics' TD losses (Algorithm 1 lines 9-11, Algorithm 4 lines 6-8) for the smoothing noise drawn by the
    caller."""
    with torch.no_grad():
        next_actions = actor_target(*next_actor_in) + noise * actor_target.action_scale
        next_actions = torch.max(torch.min(next_actions, actor_target.action_scale + actor_target.action_bias),
                                 actor_target.action_bias - actor_target.action_scale)  # fmt: skip
        next_q = torch.min(qf1_target(data["next_obs"], next_actions), qf2_target(data["next_obs"], next_actions))
        target_q = data["rewards"] + (1 - data["terminations"]) * gamma * next_q
    return tuple(F.mse_loss(q(data["obs"], data["actions"]), target_q) for q in (qf1, qf2))


def actor_loss(obs, actor_in, actor, qf1):
    """The deterministic policy gradient's loss, -Q1(s, pi(s)) (Algorithm 1 line 14, Algorithm 4 line 10)."""
    return -qf1(obs, actor(*actor_in)).mean()


def bc_loss(windows, valids, targets, transformer):
    """Algorithm 2, lines 2-4."""
    return F.mse_loss(transformer(windows, valids), targets)


def ascent_q(windows, valids, transformer, qf1):
    """Algorithm 3, lines 2-3: the mean Q1 of the transformer's actions, which critic ascent maximises."""
    return qf1(windows[:, -1], transformer(windows, valids)).mean()


EAGER = (critic_losses, actor_loss, bc_loss, ascent_q)


def compiled_losses(device: torch.device) -> tuple:
    """EAGER's losses under torch.compile, forward and backward; on CUDA as CUDA graphs (reduce-overhead), whose
    outputs the next replay overwrites (the updates clone what they keep). Parameters are graph inputs, so new
    networks of the same shapes reuse the compiled code."""
    mode = "reduce-overhead" if device.type == "cuda" else None
    return tuple(torch.compile(fn, mode=mode) for fn in EAGER)


def td3_update(step, data, actor_in, next_actor_in, actor, actor_target, qf1, qf2, qf1_target, qf2_target,
               q_optimizer, actor_optimizer, args: Args, train_actor: bool = True,
               losses_fns: tuple = EAGER) -> dict:  # fmt: skip
    """One TD3 step (Algorithm 1 lines 8-19 for the accelerator, Algorithm 4 lines 5-14 for the transformer).
    actor_in / next_actor_in are the actor's inputs for s and s' (observations or context windows); the
    critics always read the current observation. With train_actor False only the critics (and their targets)
    learn: the stage-2 critic warm-up. losses_fns: EAGER or compiled_losses(device)."""
    if losses_fns is not EAGER:
        torch.compiler.cudagraph_mark_step_begin()  # the previous update's graph outputs are no longer read
    # drawn outside the losses, so the compiled and eager updates draw the same noise
    noise = (torch.randn_like(data["actions"]) * args.policy_noise).clamp(-args.noise_clip, args.noise_clip)
    qf1_loss, qf2_loss = losses_fns[0](data, noise, next_actor_in, actor_target, qf1, qf2, qf1_target, qf2_target,
                                       args.gamma)  # fmt: skip
    q_optimizer.zero_grad()
    (qf1_loss + qf2_loss).backward()
    q_optimizer.step()
    # clones: a CUDA graph's outputs are overwritten by its next replay
    losses = {"losses/qf1_loss": qf1_loss.detach().clone(), "losses/qf2_loss": qf2_loss.detach().clone()}
    if step % args.policy_frequency == 0:
        if train_actor:
            # qf1 frozen for the actor loss: its weight gradients would be dropped unused by the next zero_grad
            qf1.requires_grad_(False)
            try:
                loss = losses_fns[1](data["obs"], actor_in, actor, qf1)
                actor_optimizer.zero_grad()
                loss.backward()
            finally:
                qf1.requires_grad_(True)
            actor_optimizer.step()
            soft_update(actor, actor_target, args.tau)
            losses["losses/actor_loss"] = loss.detach().clone()
        soft_update(qf1, qf1_target, args.tau)
        soft_update(qf2, qf2_target, args.tau)
    return losses


def train_transformer(trajectory: TrajectoryBuffer, transformer, transformer_target, optimizer, qf1, actor,
                      args: Args, device, losses_fns: tuple = EAGER) -> dict:  # fmt: skip
    """Algorithm 1 line 12: `bc_updates` minibatch steps on T of behavior cloning (Algorithm 2) and, with
    --critic-ascent, ascent on Q1 (Algorithm 3), each followed by a target soft update; with --bc-clear T is then
    emptied. With --bc-target actor the targets are the accelerator's current actor on T's (possibly noisy) states,
    so a sample stays correctly labelled however long it stays in T."""
    transformer.train()
    bc_losses, ascent_qs = [], []
    for _ in range(args.bc_updates):
        if losses_fns is not EAGER:
            torch.compiler.cudagraph_mark_step_begin()
        windows, valids, targets = trajectory.sample(args.bc_batch_size or args.batch_size, device)
        if args.bc_target == "actor":
            with torch.no_grad():
                targets = actor(windows[:, -1])
        loss = losses_fns[2](windows, valids, targets, transformer)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        soft_update(transformer, transformer_target, args.tau)
        bc_losses.append(loss.detach().clone())
        if args.critic_ascent:
            qf1.requires_grad_(False)  # only the transformer learns here (qf1's gradient would be dropped unused)
            try:
                q = losses_fns[3](windows, valids, transformer, qf1)
                optimizer.zero_grad()
                (-q).backward()
            finally:
                qf1.requires_grad_(True)
            optimizer.step()
            soft_update(transformer, transformer_target, args.tau)
            ascent_qs.append(q.detach().clone())
    transformer.eval()
    if args.bc_clear:
        trajectory.clear()
    out = {"losses/bc_loss": torch.stack(bc_losses).mean()}
    if ascent_qs:
        out["losses/critic_ascent_q"] = torch.stack(ascent_qs).mean()
    return out


# ---------------------------------------------------------------------------------------------------------------
# Acting and evaluation
@torch.no_grad()
def transformer_act(transformer, window: EpisodeWindow, device) -> np.ndarray:
    w = torch.as_tensor(window.obs[None], device=device)
    v = torch.as_tensor(window.valid[None], device=device)
    return transformer(w, v)[0].cpu().numpy()


@torch.no_grad()
def mlp_act(actor, obs, device) -> np.ndarray:
    return actor(torch.as_tensor(obs[None], dtype=torch.float32, device=device))[0].cpu().numpy()


def act(stage: int, global_step: int, obs, window: EpisodeWindow, actor, transformer, action_space, args: Args,
        device, dagger: bool = False) -> np.ndarray:  # fmt: skip
    """Algorithm 1 line 5 / Algorithm 4 line 3: the acting policy (the accelerator in stage 1, the transformer on
    its episode window in stage 2 and in --bc-dagger episodes) plus Gaussian exploration noise; uniform random
    during stage 1's warm-up."""
    if stage == 1 and global_step < args.learning_starts:
        return action_space.sample()
    low, high = action_space.low, action_space.high
    by_transformer = stage == 2 or dagger
    action = transformer_act(transformer, window, device) if by_transformer else mlp_act(actor, obs, device)
    return np.clip(action + np.random.normal(0, (high - low) / 2 * args.exploration_noise), low, high)


def draw_dagger(stage: int, global_step: int, args: Args) -> bool:
    """Whether the transformer drives the episode starting now (--bc-dagger, whose episodes feed T: so only with
    --bc-source train; no random draw when it is off)."""
    on = stage == 1 and args.bc_dagger > 0 and args.bc_source == "train" and global_step >= args.learning_starts
    return on and np.random.rand() < args.bc_dagger


def store_in_T(trajectory: TrajectoryBuffer, window: EpisodeWindow, action, actor, args: Args, device,
               dagger: bool = False) -> None:  # fmt: skip
    """Algorithm 1 line 7: store (window of s, a) in T; with --bc-state-noise (section 3.1) the window of s + noise
    (padding stays zero). The label is read only with --bc-target behavior (`actor` relabels every sample when it
    trains, so the executed action is kept as a placeholder, without a forward pass): the executed action, or in a
    --bc-dagger episode, where the transformer acted, the accelerator's noise-free action on the true s."""
    obs = window.obs
    if args.bc_state_noise > 0:
        noise = np.random.normal(0, args.bc_state_noise, obs.shape) * window.valid[:, None]
        obs = (obs + noise).astype(np.float32)
    if dagger and args.bc_target == "behavior":
        action = mlp_act(actor, window.obs[-1], device)
    trajectory.add(obs, window.valid, action)


def evaluate(env, act, episodes: int, seed: int, context_len: int, step: int,
             trajectory: TrajectoryBuffer | None = None, tick=None):  # fmt: skip
    """Mean undiscounted return of `episodes` deterministic episodes; act(window) -> action. With `trajectory`,
    each (window, action) is stored in T (--bc-source eval). tick(episode, episodes), if given, runs every step
    (the progress bar; a signal stops the evaluation there)."""
    window = EpisodeWindow(context_len, env.observation_space.shape[0])
    returns = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        window.reset(obs)
        done, ep_return = False, 0.0
        while not done:
            if tick is not None:
                tick(ep, episodes)
            action = act(window)
            check_action(action, "evaluated policy", step)
            if trajectory is not None:
                trajectory.add(window.obs, window.valid, action)
            obs, reward, terminated, truncated, _ = env.step(action)
            ep_return += float(reward)
            done = terminated or truncated
            window.push(obs)
        returns.append(ep_return)
    return float(np.mean(returns))


# ---------------------------------------------------------------------------------------------------------------
# Training loop: Algorithm 1 (stage 1), then Algorithm 4 (stage 2)
def main(args: Args, on_step=None) -> None:
    """Both stages. on_step, if given, is called with the loop's local variables after every environment step
    (the tests inspect buffers, windows and networks of the real loop through it)."""
    run = Run(args)  # checks the flags, reads resume.pt, seeds the generators, picks the device
    device, state = run.device, run.state
    env = make_env(args.env_id, args.seed, args.capture_video, f"videos/{run.name}")
    eval_env = make_env(args.env_id, args.seed + 1)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    low, high = env.action_space.low.astype(np.float32), env.action_space.high.astype(np.float32)
    ckpt = load_checkpoint(args.accelerated_checkpoint, args, obs_dim, act_dim) if run.fine_tune_only else None

    # Algorithm 1, lines 1-3
    actor, actor_target = Actor(obs_dim, low, high).to(device), Actor(obs_dim, low, high).to(device)
    qf1, qf2 = QNetwork(obs_dim, act_dim).to(device), QNetwork(obs_dim, act_dim).to(device)
    qf1_target, qf2_target = QNetwork(obs_dim, act_dim).to(device), QNetwork(obs_dim, act_dim).to(device)
    transformer = make_transformer(obs_dim, low, high, args).to(device)
    transformer_target = make_transformer(obs_dim, low, high, args).to(device)
    for net, target in [(actor, actor_target), (qf1, qf1_target), (qf2, qf2_target), (transformer, transformer_target)]:
        target.load_state_dict(net.state_dict())
    transformer.eval()  # acting is dropout-free; train mode only inside updates
    transformer_target.eval()
    q_optimizer = adam(list(qf1.parameters()) + list(qf2.parameters()), args.learning_rate)
    actor_optimizer = adam(actor.parameters(), args.learning_rate)
    transformer_optimizer = adam(transformer.parameters(), args.learning_rate)
    rb = ReplayBuffer(args.accel_buffer_size, obs_dim, act_dim, device, run.on_device)  # replaced in stage 2
    trajectory = TrajectoryBuffer(args.bc_buffer_size, args.context_len, obs_dim, act_dim)
    window = EpisodeWindow(args.context_len, obs_dim)
    losses_fns = compiled_losses(device) if args.compile else EAGER
    learners = dict(actor=actor, actor_target=actor_target, qf1=qf1, qf2=qf2, qf1_target=qf1_target,
                    qf2_target=qf2_target, transformer=transformer, transformer_target=transformer_target,
                    q_optimizer=q_optimizer, actor_optimizer=actor_optimizer,
                    transformer_optimizer=transformer_optimizer)  # fmt: skip

    global_step, stage, stage1_end = 0, 1, args.accel_steps
    episode_count, last_eval, stage_losses, dagger = 0, {}, {}, False
    if ckpt is not None:  # fine-tune only: stage 1's networks, targets and critic optimizer
        global_step = stage1_end = load_accelerated(ckpt, learners, args)
    obs, _ = env.reset(seed=args.seed)
    env_rng = env.unwrapped.np_random.bit_generator.state  # resume.pt's at an episode boundary: before its reset
    if state is not None:  # --resume: the saved step, the RNGs last (building the networks above drew from them)
        rb = ReplayBuffer(args.accel_buffer_size if state["stage"] == 1 else args.buffer_size, obs_dim, act_dim,
                          device, run.on_device)  # fmt: skip
        obs, env_rng = run.restore(learners, rb, trajectory, env)
        stage, global_step, episode_count, last_eval, stage_losses, dagger = (state[k] for k in (
            "stage", "global_step", "episode_count", "last_eval", "stage_losses", "dagger"))  # fmt: skip
        stage1_end = resumed_stage1_end(args, state)
    total_steps = stage1_end + args.finetune_steps
    window.reset(obs)
    episode_step, episode_return = 0, 0.0

    def resume_state() -> dict:  # everything the loop needs to go on from this step
        return {"stage": stage, "global_step": global_step, "stage1_end": stage1_end, "episode_count": episode_count,
                "episode_step": episode_step, "dagger": dagger, "last_eval": last_eval, "stage_losses": stage_losses,
                "rb": rb.state_dict(), "trajectory": trajectory.state_dict(),
                **run.rng_state(env, env_rng, episode_step),
                **{k: v.state_dict() for k, v in learners.items()}}  # fmt: skip

    def networks(stage: int) -> dict:  # accelerated.pt (with stage 2's prefill, if fine-tuned from it) or final.pt
        return {"stage": stage, "global_step": global_step, "obs_dim": obs_dim, "act_dim": act_dim,
                **{k: v.state_dict() for k, v in learners.items()},
                "recent_transitions": rb.recent(args.buffer_size) if stage == 1 else None}  # fmt: skip

    def evaluate_now() -> None:  # deterministic episodes of the accelerator (stage 1) and of the transformer
        run.finite.flush()
        seed = args.seed + 10_000 + global_step
        # T gets only the trained accelerator's rollouts (--bc-source eval); such an evaluation is not interrupted
        fill = trajectory if stage == 1 and args.bc_source == "eval" and global_step > args.learning_starts else None
        tick = run.evaluation(global_step, stage, interruptible=fill is None)
        if stage == 1:
            accelerator = lambda w: mlp_act(actor, w.obs[-1], device)  # noqa: E731
            last_eval["accelerator"] = evaluate(eval_env, accelerator, args.eval_episodes, seed, args.context_len,
                                                global_step, fill, tick)  # fmt: skip
        transformer_policy = lambda w: transformer_act(transformer, w, device)  # noqa: E731
        last_eval["transformer"] = evaluate(eval_env, transformer_policy, args.eval_episodes, seed, args.context_len,
                                            global_step, tick=tick)  # fmt: skip
        run.report(global_step, stage, episode_count, last_eval)

    with run.start(global_step, total_steps, stage1_end, resume_state, closing=(env, eval_env)):
        if state is not None and state.get("eval_pending"):  # a signal stopped this step's evaluation: redo it
            evaluate_now()
        while global_step < total_steps:
            if stage == 1 and global_step == stage1_end:
                # Algorithm 4 line 1: keep critics and targets, drop the accelerator's actor, new small replay buffer
                run.finite.flush()
                if not run.from_checkpoint:
                    run.save("accelerated.pt", networks(stage=1))
                trajectory.clear()
                last_eval.pop("accelerator", None)  # stage-2 progress lines show the transformer only
                stage_losses = {}
                # prefill: the accelerator's latest transitions, this run's or those stored in the checkpoint
                recent = rb.recent(args.buffer_size) if ckpt is None else ckpt.get("recent_transitions")
                stage, rb = 2, ReplayBuffer(args.buffer_size, obs_dim, act_dim, device, run.on_device)
                if args.prefill:
                    rb.extend(recent)
                transformer_optimizer = adam(transformer.parameters(), args.learning_rate)  # a fresh Adam
                learners["transformer_optimizer"] = transformer_optimizer
                obs, env_rng = reset_env(env)
                window.reset(obs)
                episode_step, episode_return, dagger = 0, 0.0, False
                run.new_stage(global_step)

            action = act(stage, global_step, obs, window, actor, transformer, env.action_space, args, device, dagger)
            if stage == 1 and args.bc_source == "train" and global_step >= args.learning_starts:
                store_in_T(trajectory, window, action, actor, args, device, dagger)
            check_action(action, "accelerator" if stage == 1 and not dagger else "transformer", global_step, run.finite)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            rb.add(obs, next_obs, action, reward, terminated, episode_step)
            global_step, episode_step = global_step + 1, episode_step + 1
            episode_return += float(reward)
            if terminated or truncated:
                run.log(global_step, {"charts/episodic_return": episode_return, "charts/episodic_length": episode_step})
                episode_count += 1
                obs, env_rng = reset_env(env)
                window.reset(obs)
                episode_step, episode_return = 0, 0.0
                dagger = draw_dagger(stage, global_step, args)
            else:
                obs = next_obs
                window.push(obs)

            losses = {}
            if stage == 1 and global_step > args.learning_starts:  # Algorithm 1 lines 8-19
                data = rb.sample(args.batch_size)
                losses = td3_update(global_step, data, (data["obs"],), (data["next_obs"],), actor, actor_target, qf1,
                                    qf2, qf1_target, qf2_target, q_optimizer, actor_optimizer, args,
                                    losses_fns=losses_fns)  # fmt: skip
                if global_step % args.bc_frequency == 0 and len(trajectory):
                    losses.update(train_transformer(trajectory, transformer, transformer_target, transformer_optimizer,
                                                    qf1, actor, args, device, losses_fns))  # fmt: skip
            elif stage == 2:  # Algorithm 4 lines 5-14
                data = rb.sample(args.batch_size, args.context_len)
                transformer.train()
                losses = td3_update(global_step, data, (data["window"], data["valid"]),
                                    (data["next_window"], data["next_valid"]), transformer, transformer_target, qf1,
                                    qf2, qf1_target, qf2_target, q_optimizer, transformer_optimizer, args,
                                    train_actor=global_step - stage1_end > args.critic_warmup,
                                    losses_fns=losses_fns)  # fmt: skip
                transformer.eval()
            run.finite(losses, global_step)
            stage_losses.update(losses)
            stage_end = global_step in (stage1_end, total_steps)
            run.log_step(global_step, stage, stage_losses if stage_end else losses, stage_end)
            if global_step % args.eval_frequency == 0 or stage_end:  # both stages end with a measured return
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
# The resumable state of an unfinished run (README, "Interrupting and resuming a run"); removed when the run ends.
RESUME_FILE = "resume.pt"
# Flags a resumed run may set anew (total steps, evaluation, logging, threads); all others must match the run's.
RESUME_SAFE = ("accel_steps", "finetune_steps", "eval_frequency", "eval_episodes", "log_frequency",
               "checkpoint_frequency", "num_threads", "track", "wandb_project_name", "wandb_entity",
               "resume")  # fmt: skip
EXIT_INTERRUPTED = 3  # SIGTERM or SIGINT: the resumable state was written, `--resume RUN_DIR` continues
# The CUDA path (replay buffer indices drawn on the device, deferred finite check): None takes it on CUDA only
DEVICE_PATH: bool | None = None
# (flags, requirement, test): each flag's value must pass its test, else a one-line error names flag and value
RULES = (
    (("accel_buffer_size", "buffer_size", "batch_size", "policy_frequency", "bc_frequency", "bc_updates",
      "bc_batch_size", "bc_buffer_size", "context_len", "num_layers", "num_heads", "dim_model", "dim_feedforward",
      "eval_frequency", "eval_episodes", "log_frequency", "num_threads"), "must be positive",
     lambda v: v is None or v > 0),
    (("accel_steps", "finetune_steps", "learning_starts", "critic_warmup", "checkpoint_frequency", "policy_noise",
      "noise_clip", "exploration_noise", "bc_state_noise", "learning_rate"), "must be >= 0",
     lambda v: v >= 0),  # NaN fails too
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
    for name in ["accel_buffer_size", "buffer_size"]:
        if getattr(args, name) < args.batch_size:
            raise UsageError(f"{flag(name)} ({getattr(args, name)}) is smaller than --batch-size ({args.batch_size})")
    if args.dim_model % args.num_heads:
        raise UsageError(f"--dim-model ({args.dim_model}) must be divisible by --num-heads ({args.num_heads})")
    # Adam's first step is about lr / (1 - beta1); beyond float32's range it cannot even be represented
    if not np.isfinite(args.learning_rate) or args.learning_rate / (1 - 0.9) > float(torch.finfo(torch.float32).max):
        raise UsageError(f"--learning-rate must be finite and at most 3.4e37, got {args.learning_rate}")
    if args.accelerated_checkpoint is not None and not args.resume and not os.path.isfile(args.accelerated_checkpoint):
        raise UsageError(f"--accelerated-checkpoint: no such file: {args.accelerated_checkpoint}")
    if args.accelerated_checkpoint is not None and args.finetune_steps == 0:
        raise UsageError("--accelerated-checkpoint skips stage 1, and --finetune-steps 0 leaves nothing to run")


def check_compile(device: torch.device) -> None:
    """--compile needs dynamo on this Python and, on the CPU, a C++ compiler for inductor's kernels."""
    if not torch._dynamo.is_dynamo_supported():
        raise UsageError(f"--compile: torch.compile is not supported here (Python {sys.version.split()[0]})")
    if device.type == "cpu":
        from torch._inductor.cpp_builder import get_cpp_compiler

        try:
            get_cpp_compiler()
        except Exception as e:  # noqa: BLE001 - whatever inductor's search raises
            raise UsageError(f"--compile on the CPU needs a C++ compiler for inductor: {e}") from None


def check_finite(losses: dict, step: int) -> None:
    bad = [name for name, v in losses.items() if not torch.isfinite(v).all()]
    if bad:
        raise DivergenceError(f"{bad[0]} is {losses[bad[0]].item()} at global step {step}")


class FiniteCheck:
    """check_finite on every step's losses: at once (the CPU's way: a host sync per step costs microseconds), or,
    deferred (CUDA: a per-step sync would stall the host until the update ends), each step's loss tensors kept and
    checked all together with one sync by flush(), which the loop calls when it logs, before every evaluation and
    checkpoint write and at the end: the same error, naming the first non-finite loss and its step."""

    MAX_PENDING = 1000  # steps kept before a flush of their own (bounds the device memory they hold)

    def __init__(self, deferred: bool):
        self.deferred, self.pending = deferred, []

    def __call__(self, losses: dict, step: int) -> None:
        if not self.deferred:
            check_finite(losses, step)
        elif losses:
            self.pending.append((step, losses))
            if len(self.pending) >= self.MAX_PENDING:
                self.flush()

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        values = [v.reshape(-1) for _, losses in pending for v in losses.values()]
        if values and not torch.isfinite(torch.cat(values)).all():  # the one sync
            for step, losses in pending:
                check_finite(losses, step)


def check_action(action: np.ndarray, who: str, step: int, finite: FiniteCheck | None = None) -> None:
    # weights blown up by the last update are still finite; their first action is where NaN shows
    if not np.isfinite(action).all():
        if finite is not None:  # a deferred non-finite loss before it is the cause to report
            finite.flush()
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


def reset_env(env) -> tuple:
    """A new episode from the env's own generator, and that generator's state before it (resume.pt's at an
    episode boundary: resetting from it again gives the same episode)."""
    rng = env.unwrapped.np_random.bit_generator.state
    obs, _ = env.reset()
    return obs, rng


def resumed_stage1_end(args: Args, state: dict) -> int:
    """Where stage 2 starts in a resumed run: --accel-steps may still move it while stage 1 runs."""
    return args.accel_steps if state["stage"] == 1 else state["stage1_end"]


def check_resume_args(args: Args, state: dict) -> None:
    """A resumed run keeps its flags; RESUME_SAFE ones may change, as long as the steps already run still fit."""
    for name, saved in state["args"].items():
        if name not in RESUME_SAFE and getattr(args, name) != saved:
            raise UsageError(f"--resume {args.resume}: {flag(name)} {getattr(args, name)} contradicts the run's "
                             f"{saved}; only {', '.join(RESUME_SAFE[:-1])} may change")  # fmt: skip
    if args.accel_steps != state["args"]["accel_steps"]:
        if state["stage"] == 2 or args.accelerated_checkpoint:
            raise UsageError(f"--resume {args.resume}: --accel-steps cannot change, stage 1 is over")
        if args.accel_steps < state["global_step"]:
            raise UsageError(f"--resume {args.resume}: --accel-steps {args.accel_steps} is less than the "
                             f"{state['global_step']} steps stage 1 has already run")  # fmt: skip
    if resumed_stage1_end(args, state) + args.finetune_steps < state["global_step"]:
        raise UsageError(f"--resume {args.resume}: --finetune-steps {args.finetune_steps} ends the run before step "
                         f"{state['global_step']}, where it stopped")  # fmt: skip


def load_checkpoint(path: str, args: Args, obs_dim: int, act_dim: int) -> dict:
    """Load a stage-1 checkpoint and check it fits this run (env, shapes, transformer architecture)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file is a usage error
        raise UsageError(f"--accelerated-checkpoint {path}: not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or "transformer" not in ckpt or "qf1" not in ckpt:
        raise UsageError(f"--accelerated-checkpoint {path}: not a checkpoint written by td3_accel_mujoco.py")
    if ckpt.get("stage") != 1:
        raise UsageError(f"--accelerated-checkpoint {path} was written after stage {ckpt.get('stage')}; "
                         "give the accelerated.pt written at the end of stage 1")  # fmt: skip
    if ckpt["args"]["env_id"] != args.env_id:
        raise UsageError(f"--accelerated-checkpoint {path} was made for {ckpt['args']['env_id']}, not {args.env_id}")
    if (ckpt["obs_dim"], ckpt["act_dim"]) != (obs_dim, act_dim):
        raise UsageError(f"--accelerated-checkpoint {path}: obs/action dims {ckpt['obs_dim']}/{ckpt['act_dim']} "
                         f"do not match the env's {obs_dim}/{act_dim}")  # fmt: skip
    for name in TRANSFORMER_FIELDS:
        if ckpt["args"][name] != getattr(args, name):
            raise UsageError(f"--accelerated-checkpoint {path} has {flag(name)} {ckpt['args'][name]}, this run asks "
                             f"for {getattr(args, name)}")  # fmt: skip
    return ckpt


def load_accelerated(ckpt: dict, learners: dict, args: Args) -> int:
    """Fine-tune only: stage 1's networks, targets and critic optimizer (not the dropped actor's Adam; the
    transformer's starts fresh, Algorithm 4), at this run's --learning-rate. Returns the step stage 1 ended at."""
    if args.prefill and ckpt.get("recent_transitions") is None:
        raise UsageError(f"--accelerated-checkpoint {args.accelerated_checkpoint} holds no transitions to prefill "
                         "stage 2's buffer with (written by an older version); add --no-prefill")  # fmt: skip
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
    import mujoco

    return {"torch": torch.__version__, "gymnasium": gym.__version__, "mujoco": mujoco.__version__,
            "numpy": np.__version__, "python": sys.version.split()[0]}  # fmt: skip


class Run:
    """What main() needs besides the method: the run directory and its resume.pt, seeds and device, TensorBoard (and
    wandb), the progress line and bar, SIGTERM/SIGINT, the finite check and the checkpoint writes."""

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
        self.device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
        if self.device.type == "cpu":
            torch.set_num_threads(args.num_threads)
        self.on_device = self.device.type == "cuda" if DEVICE_PATH is None else DEVICE_PATH
        self.finite = FiniteCheck(deferred=self.on_device)
        if args.compile:
            check_compile(self.device)
        if args.capture_video:
            os.environ.setdefault("MUJOCO_GL", "egl")
            try:
                import moviepy  # noqa: F401 - RecordVideo needs it
            except ImportError:
                raise UsageError("--capture-video needs moviepy: pip install moviepy") from None
        self.writer, self.bar, self.stop, self.handlers, self.closing, self.returns = None, None, [], {}, (), ""

    def restore(self, learners: dict, rb: ReplayBuffer, trajectory: TrajectoryBuffer, env) -> tuple:
        """--resume: learners, buffers and every generator as saved; the env's first obs, and its generator's state."""
        state = self.state
        for name, obj in learners.items():
            obj.load_state_dict(state[name])
        rb.load_state_dict(state["rb"])
        trajectory.load_state_dict(state["trajectory"])
        env.unwrapped.np_random.bit_generator.state = state["env_rng"]
        obs, _ = env.reset()  # no seed: from the saved generator
        env.action_space.np_random.bit_generator.state = state["action_space_rng"]
        random.setstate(state["python_rng"])
        np.random.set_state(state["numpy_rng"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        return obs, state["env_rng"]

    def rng_state(self, env, env_rng, episode_step: int) -> dict:
        """Every generator's state; at an episode boundary the env's before that episode's reset, which is replayed
        (mid-episode a fresh episode starts: a MuJoCo state is not saved)."""
        return {"env_rng": env_rng if episode_step == 0 else env.unwrapped.np_random.bit_generator.state,
                "action_space_rng": env.action_space.np_random.bit_generator.state, "python_rng": random.getstate(),
                "numpy_rng": np.random.get_state(), "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None}  # fmt: skip

    def start(self, global_step: int, total_steps: int, stage1_end: int, resume_state, closing=()):
        """Open TensorBoard (and wandb), print the run's line, start the bar, catch SIGTERM and SIGINT.
        resume_state() -> the loop's resumable state at the current step."""
        args, self.total_steps, self.stage1_end, self.closing = self.args, total_steps, stage1_end, closing
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
            table = {**asdict(args), **{f"version/{k}": v for k, v in versions().items()}, "device": str(self.device)}
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
            print(f"run {self.path}: steps {global_step}..{total_steps}, stage 2 from step {stage1_end}, device "
                  f"{self.device}", flush=True)  # fmt: skip
        else:
            redo = "; a signal stopped its evaluation, which runs again first" * bool(state.get("eval_pending"))
            print(f"resumed {self.path} at step {state['global_step']} (stage {state['stage']}){redo}", flush=True)
        if state is not None and state["episode_step"]:
            print(f"resumed mid-episode: the interrupted episode ({state['episode_step']} steps) is not counted and "
                  "a fresh one starts (environment states are not saved)", flush=True)  # fmt: skip
        if args.compile:
            print("--compile: the first updates compile the losses (minutes on a CPU)", flush=True)
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
        """After each step: the bar, and every --log-frequency steps and at a stage's end the losses and SPS."""
        self.tick_clock(global_step)
        if self.bar is not None:
            self.bar.update(1)
            if global_step % 100 == 0:
                self.bar.set_postfix_str(f"stage {stage}, eta {self.eta(global_step)}{self.returns}", refresh=False)
        if global_step % self.args.log_frequency == 0 or stage_end:
            self.finite.flush()
            self.log(global_step, {name: value.item() for name, value in losses.items()})
            self.log(global_step, {"charts/SPS": int(self.sps(global_step)), "charts/stage": stage})

    def report(self, global_step: int, stage: int, episode_count: int, last_eval: dict) -> None:
        """An evaluation's returns: to TensorBoard, and as the progress line (the bar's postfix on a terminal)."""
        self.log(global_step, {f"eval/{k}_return": v for k, v in last_eval.items()})
        evals = " ".join(f"{k}_return={v:.1f}" for k, v in last_eval.items())
        self.tick_clock(global_step)  # the evaluation's time belongs to this phase
        eta, sps = self.eta(global_step), int(self.sps(global_step))
        line = f"step={global_step} stage={stage} SPS={sps} eta={eta} episodes={episode_count} {evals}"
        self.returns = ", " + evals.replace("_return=", " ")
        if self.bar is None:
            print(line, flush=True)
        else:
            self.bar.write(line)
            self.bar.set_postfix_str(f"stage {stage}, eta {eta}{self.returns}")

    def evaluation(self, global_step: int, stage: int, interruptible: bool = True):
        """The tick evaluate() calls every step: the bar shows how far the evaluation is, its clock going on; after
        SIGTERM/SIGINT an interruptible one stops there, resume.pt marked so that the resumed run redoes it."""
        start, shown = time.time(), [0.0]

        def tick(episode: int, episodes: int) -> None:
            if self.stop and interruptible:
                self.interrupt(global_step, eval_pending=True)
            if self.bar is not None and time.time() - shown[0] > 0.5:
                shown[0] = time.time()
                self.bar.set_postfix_str(f"stage {stage}, evaluating: episode {episode + 1}/{episodes}, "
                                         f"{duration(shown[0] - start)}")  # fmt: skip

        return tick

    def save(self, name: str, payload: dict) -> None:
        save_checkpoint(os.path.join(self.path, name), {**payload, "args": asdict(self.args), "versions": versions()})

    def maybe_checkpoint(self, global_step: int) -> None:
        """resume.pt every --checkpoint-frequency steps and after a signal (then stop: Interrupted)."""
        periodic = self.args.checkpoint_frequency and global_step % self.args.checkpoint_frequency == 0
        if global_step < self.total_steps and (self.stop or periodic):
            self.write_resume()
            if self.stop:
                self.interrupt(global_step)

    def write_resume(self, eval_pending: bool = False) -> None:
        self.finite.flush()
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
        self.finite.flush()
        self.save(name, payload)
        if os.path.exists(os.path.join(self.path, RESUME_FILE)):
            os.remove(os.path.join(self.path, RESUME_FILE))
        print(f"done: checkpoints and TensorBoard events in {self.path}", flush=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()
        for env in self.closing:
            env.close()
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
