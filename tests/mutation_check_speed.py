"""Mutation check of tests/test_speed_equivalence.py: each entry breaks one speed change in a scratch copy of the
repository and runs the test file there; every line must report failures.

    python tests/mutation_check_speed.py
"""

import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYER_FILES = ["td3_accel_mujoco.py", "baselines/td3_transformer_mujoco.py", "td3_accel_lstm_pomdp.py"]
M = {  # name: (files, old, new)
    "attention ignores the padding mask": (
        LAYER_FILES, "attn_mask=~padding_mask[:, None, None],", "attn_mask=None,"),
    "attention without dropout in train mode": (
        LAYER_FILES, "dropout_p=self.attn.dropout if self.training else 0.0", "dropout_p=0.0"),
    "attention heads mixed up": (
        LAYER_FILES, ".view(b, k, 2, heads, e // heads).permute(2, 0, 3, 1, 4)",
        ".view(b, k, 2, e // heads, heads).permute(2, 0, 4, 1, 3)"),
    "fused Adam with other betas": (
        ["baselines/td3_mlp_mujoco.py"], "torch.optim.Adam(params, lr=lr, fused=True)",
        "torch.optim.Adam(params, lr=lr, fused=True, betas=(0.8, 0.999))"),
    "qf1 left frozen after the actor loss": (
        ["td3_accel_mujoco.py"], "finally:\n                qf1.requires_grad_(True)\n            actor_opt",
        "finally:\n                pass\n            actor_opt"),
    "actor frozen instead of qf1 (baseline transformer)": (
        ["baselines/td3_transformer_mujoco.py"], "        qf1.requires_grad_(False)\n",
        "        actor.requires_grad_(False)\n"),
    "qf1 not frozen in critic ascent": (
        ["td3_accel_mujoco.py"], "            qf1.requires_grad_(False)  # only the transformer",
        "            qf1.requires_grad_(True)  # only the transformer"),
    "soft update toward the target (arguments swapped)": (
        ["baselines/td3_lstm_mujoco.py"], "_foreach_lerp_(list(target.parameters()), list(net.parameters()), tau)",
        "_foreach_lerp_(list(net.parameters()), list(target.parameters()), tau)"),
}  # fmt: skip
for name, (files, old, new) in M.items():
    d = os.path.join("/tmp", "speed_mutation")
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(ROOT, d, ignore=shutil.ignore_patterns("runs", ".git"))
    for f in files:
        src = open(f"{d}/{f}").read()
        assert src.count(old) == 1, (name, f)
        open(f"{d}/{f}", "w").write(src.replace(old, new))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "tests/test_speed_equivalence.py"], cwd=d, capture_output=True, text=True)  # fmt: skip
    lines = r.stdout.splitlines()
    fails = sorted({x.split("::")[1].split(" ")[0] for x in lines if x.startswith(("FAILED", "ERROR"))})
    print(f"{name}: rc={r.returncode} {lines[-1] if lines else r.stderr[-200:]} {fails}", flush=True)
