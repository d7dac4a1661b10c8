"""The first Adam steps of the full-size `msfs` (21.6 M parameters), with and
without the authors' BatchNorm after each OctConv (`fsm_batchnorm`), under
PyTorch's default initialization (the preset's, as the authors' code) or
Keras' Glorot kernels (`init`).

    python benchmarks/msfs_first_steps.py [--steps 6] [--size 64] [--lr 3e-4 1e-4] [--batchnorm both|on|off] [--init both|torch|keras]

One fixed batch of two synthetic pairs (`tfdeblur.datasets.make_pair`,
seeds 0-1, SIZE px), the `msfs` recipe's loss and optimizer (Adam) at each
learning rate, `model.train_on_batch` for STEPS steps from the same seed.
Prints the content L1 of the output before each step (step 0: the
untrained network, which returns its input) and L_high; the blurry input's
L1 on the line above. Measures whether the first steps throw the network
off (measured: docs/networks/msfs.md, "First steps").
"""
import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--lr", type=float, nargs="+", default=[3e-4, 1e-4])
    ap.add_argument("--batchnorm", choices=["both", "on", "off"], default="both")
    ap.add_argument("--init", choices=["both", "torch", "keras"], default="torch")
    args = ap.parse_args(argv)

    import tfdeblur.models as models
    from tfdeblur.datasets.synthetic import make_pair
    from tfdeblur.losses import MSFSLoss
    from tfdeblur.training import compile_args

    pairs = [make_pair(seed, size=args.size) for seed in range(2)]
    blur = np.stack([p[0] for p in pairs]).astype("float32")
    sharp = np.stack([p[1] for p in pairs]).astype("float32")
    print(f"blurry input: content L1 {np.mean(np.abs(blur - sharp)):.4f}; batch 2 x {args.size}x{args.size}; "
          f"load average {os.getloadavg()[0]:.1f}")
    runs = [(init, batchnorm, lr) for init in {"both": ("torch", "keras")}.get(args.init, (args.init,))
            for batchnorm in {"both": (False, True), "on": (True,), "off": (False,)}[args.batchnorm] for lr in args.lr]
    for init, batchnorm, lr in runs:
        keras.utils.set_random_seed(0)
        model = models.build("msfs", fsm_batchnorm=batchnorm, init=init)
        model.compile(**compile_args("msfs", total_steps=1000, learning_rate=lr, metrics=False))
        l1, l1_batch, high, t0 = [], [], [], time.perf_counter()
        for _ in range(args.steps + 1):
            out = model.training_outputs(blur, sharp)
            l1.append(float(np.mean(np.abs(np.asarray(out["image"]) - sharp))))
            # BatchNorm in training mode (this batch's statistics, as the step sees them);
            # it also updates the moving statistics, as one more forward pass of training would
            out_b = model.training_outputs(blur, sharp, training=True)
            l1_batch.append(float(np.mean(np.abs(np.asarray(out_b["image"]) - sharp))))
            high.append(float(np.mean(MSFSLoss().terms(sharp, out)["high"])))
            if len(l1) <= args.steps:
                model.train_on_batch(blur, sharp)
        seconds = (time.perf_counter() - t0) / args.steps
        print(f"init {init:5} fsm_batchnorm={batchnorm!s:5} lr {lr:g}: content L1 " + " -> ".join(f"{v:.3f}" for v in l1)
              + " | batch-statistics L1 " + " -> ".join(f"{v:.3f}" for v in l1_batch)
              + (f" | L_high {high[0]:.2f} -> {high[-1]:.2f}" if high else "") + f" | {seconds:.0f} s/step", flush=True)


if __name__ == "__main__":
    main()
