"""How far bf16 training gradients are from float32 ones, with and without
`tfdeblur.bias_grad` (float32 sums of bf16 bias gradients).

    python benchmarks/bf16_gradients.py mtwdn-photos lmfn-photos [--pairs 4] [--crop 256]

For each shipped model: the same weights under float32 and under
mixed_bfloat16, the same batch of photo pairs (`datasets/photos.py`, the
training split of --photos, default mix, fixed seeds), the recipe's loss;
then the cosine and norm ratio (bf16 / float32) of the whole gradient, the
median over variables, and the worst variables. Run once with TensorFlow's
own `BiasAdd` gradient and once with ours. Prints numbers; asserts nothing
(tests/test_bias_grad.py tests the fix).
"""

import argparse
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def gradients(name, recipe, policy, blur, sharp):
    import keras
    import tensorflow as tf

    import tfdeblur.models as models
    from tfdeblur.training.recipes import compile_args

    keras.mixed_precision.set_global_policy(policy)
    try:
        model = models.from_preset(name)
        model.compile(**compile_args(models.get_recipe(recipe), 1000))
        with tf.GradientTape() as tape:
            y_pred = model.training_outputs(blur, sharp, training=True)
            loss = model.compute_loss(x=blur, y=sharp, y_pred=y_pred, training=True)
        grads = tape.gradient(loss, model.trainable_variables)
        return float(loss), [(v.path, tf.cast(g, tf.float32).numpy().ravel())
                             for v, g in zip(model.trainable_variables, grads)]
    finally:
        keras.mixed_precision.set_global_policy("float32")


def cosine(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="+", help="shipped weights, e.g. mtwdn-photos (NAME:RECIPE; the recipe "
                   "defaults to NAME with '_' for '-', mtwdn_photos)")
    p.add_argument("--photos", default=os.path.join(REPO, "..", "shared", "data", "sharp"))
    p.add_argument("--pairs", type=int, default=4)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--worst", type=int, default=5)
    args = p.parse_args(argv)
    if not os.path.isdir(args.photos):
        sys.exit(f"error: --photos {args.photos}: no such folder (the shared sharp photos)")

    from tfdeblur import bias_grad
    from tfdeblur.datasets.photos import make_photo_pair, photo_bank

    bank = photo_bank(args.photos)
    pairs = [make_photo_pair(bank, 1000 + i, size=args.crop, split="train") for i in range(args.pairs)]
    blur = np.stack([b for b, _ in pairs]).astype(np.float32)
    sharp = np.stack([s for _, s in pairs]).astype(np.float32)
    print(f"{args.pairs} photo pairs at {args.crop} px (training split of {args.photos}, seeds 1000..)")
    for item in args.names:
        name, _, recipe = item.partition(":")
        recipe = recipe or name.replace("-", "_")
        loss32, g32 = gradients(name, recipe, "float32", blur, sharp)
        for fixed in (False, True):
            (bias_grad.install if fixed else bias_grad.uninstall)()
            loss16, g16 = gradients(name, recipe, "mixed_bfloat16", blur, sharp)
            a = np.concatenate([g for _, g in g32])
            b = np.concatenate([g for _, g in g16])
            rows = sorted((cosine(x, y), np.linalg.norm(y) / (np.linalg.norm(x) + 1e-30), path)
                          for (path, x), (_, y) in zip(g32, g16) if np.linalg.norm(x) > 0)
            label = "float32 bias sums (tfdeblur.bias_grad)" if fixed else "TensorFlow's BiasAddGrad"
            print(f"\n{name}, bf16 with {label}: loss {loss16:.6f} (float32 {loss32:.6f})")
            print(f"  whole gradient: cosine {cosine(a, b):.4f}, norm ratio {np.linalg.norm(b) / np.linalg.norm(a):.3f}")
            print(f"  per variable (median of {len(rows)}): cosine {np.median([r[0] for r in rows]):.3f}, "
                  f"norm ratio {np.median([r[1] for r in rows]):.3f}")
            for c, r, path in rows[: args.worst]:
                print(f"  worst: cosine {c:.3f}, norm ratio {r:.3f}  {path}")
        bias_grad.uninstall()


if __name__ == "__main__":
    main()
