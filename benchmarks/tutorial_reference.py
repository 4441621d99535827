"""Check the ``tutorial`` preset against an independent TensorFlow implementation of the tutorial.

The TensorFlow side is the tutorial's own algorithm written with Keras' VGG19 (``weights=None``, then
loaded with the same VGG19 weights painterly uses), ``keras.applications.vgg19.preprocess_input``,
``tf.GradientTape`` and Keras' Adam, on the same resized inputs. It shares no code with painterly's
losses, network or optimizer: only the weight values and the input pixels are handed over.

Needs TensorFlow (not a painterly dependency)::

    python -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu torch==2.13.0 -e .
    /tmp/tfvenv/bin/python benchmarks/tutorial_reference.py --size 512 --steps 20
    /tmp/tfvenv/bin/python benchmarks/tutorial_reference.py --size 128 --steps 20 \
        --save tests/data/tutorial_reference_128.json

It prints the agreement (step-0 losses, gradient, loss curve) and, with ``--save``, stores the
TensorFlow numbers that ``tests/test_tutorial_regression.py`` compares painterly against.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def demo_inputs(size: int) -> tuple[np.ndarray, np.ndarray]:
    """The demo pair resized as the tutorial's ``load_img`` does (float32 RGB 0..255, HWC)."""
    from painterly.engine.images import open_image, resize_longer
    from painterly.samples import demo_paths

    content_path, style_path = demo_paths()
    content = resize_longer(open_image(content_path), size)
    style = resize_longer(open_image(style_path), size)
    return np.asarray(content, np.float32), np.asarray(style, np.float32)


def tensorflow_run(content: np.ndarray, style: np.ndarray, steps: int, precision: str = "fp32") -> dict:
    """The tutorial in TensorFlow: step-0 losses and gradient, then ``steps`` Adam steps."""
    import tensorflow as tf
    from tensorflow import keras

    floatx = "float64" if precision == "fp64" else "float32"
    keras.backend.set_floatx(floatx)
    content, style = content.astype(floatx), style.astype(floatx)

    from painterly.engine.weights import load_weights

    content_layers = ["block5_conv2"]
    style_layers = ["block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1"]
    vgg = keras.applications.VGG19(include_top=False, weights=None)
    for name, (w, b) in load_weights("").items():
        # torch (out, in, kh, kw) -> Keras (kh, kw, in, out); input channels stay BGR as in Keras.
        vgg.get_layer(name).set_weights([w.numpy().transpose(2, 3, 1, 0), b.numpy()])
    vgg.trainable = False
    outputs = [vgg.get_layer(n).output for n in style_layers + content_layers]
    model = keras.Model(vgg.input, outputs)

    def gram(t):
        channels = int(t.shape[-1])
        a = tf.reshape(t, [-1, channels])
        n = tf.shape(a)[0]
        return tf.matmul(a, a, transpose_a=True) / tf.cast(n, a.dtype)

    pre = keras.applications.vgg19.preprocess_input
    style_out = model(pre(style[None].copy()))
    content_out = model(pre(content[None].copy()))
    gram_targets = [gram(f[0]) for f in style_out[: len(style_layers)]]
    content_targets = [f[0] for f in content_out[len(style_layers):]]

    def compute_loss(image):
        outs = model(image)
        style_score = tf.add_n([
            tf.reduce_mean(tf.square(gram(o[0]) - t)) / len(style_layers)
            for o, t in zip(outs[: len(style_layers)], gram_targets)
        ])
        content_score = tf.add_n([
            tf.reduce_mean(tf.square(o[0] - t)) / len(content_layers)
            for o, t in zip(outs[len(style_layers):], content_targets)
        ])
        style_score *= 1e-2
        content_score *= 1e3
        return style_score + content_score, style_score, content_score

    image = tf.Variable(pre(content[None].copy()), dtype=floatx)
    opt = keras.optimizers.Adam(learning_rate=5.0, beta_1=0.99, beta_2=0.999, epsilon=0.1)
    means = np.array([103.939, 116.779, 123.68], floatx)
    curve, gradient = [], None
    for i in range(steps):
        with tf.GradientTape() as tape:
            total, style_score, content_score = compute_loss(image)
        grad = tape.gradient(total, image)
        if i == 0:
            gradient = grad.numpy()[0][..., ::-1]  # BGR -> RGB, (H, W, 3)
        curve.append({"total": float(total), "style": float(style_score), "content": float(content_score)})
        opt.apply_gradients([(grad, image)])
        image.assign(tf.clip_by_value(image, -means, 255 - means))
    return {"curve": curve, "gradient": gradient}


def painterly_run(content: np.ndarray, style: np.ndarray, steps: int, precision: str = "fp32") -> dict:
    """The same with painterly's ``tutorial`` preset (inputs already at size: no resize happens)."""

    from PIL import Image

    from painterly import TUTORIAL, stylize
    from painterly.engine.devices import pick_device, storage_dtype
    from painterly.engine.images import to_tensor
    from painterly.engine.objective import build_objective
    from painterly.engine.run import build_network

    size = max(content.shape[:2])
    settings = TUTORIAL.replace(size=size, steps=steps, precision=precision)
    dtype = storage_dtype(precision)
    c_img, s_img = Image.fromarray(content.astype(np.uint8)), Image.fromarray(style.astype(np.uint8))
    net = build_network(settings, pick_device("cpu"), precision)
    c = to_tensor(c_img).to(dtype)
    objective = build_objective(net, settings, c, [to_tensor(s_img).to(dtype)])
    x = c.clone().requires_grad_(True)
    objective(x).total.backward()
    gradient = x.grad[0].permute(1, 2, 0).numpy()
    result = stylize(c_img, s_img, settings, device="cpu")
    curve = [{k: h[k] for k in ("total", "style", "content")} for h in result.history]
    return {"curve": curve, "gradient": gradient}


def compare(tf_run: dict, pt_run: dict) -> dict:
    """Relative differences: step-0 losses, gradient (max abs diff / max abs), curve (max over steps)."""
    t0, p0 = tf_run["curve"][0], pt_run["curve"][0]
    # The content loss is 0 at step 0 (the run starts from the content); measure it against the total.
    step0 = {k: abs(p0[k] - t0[k]) / (abs(t0[k]) or abs(t0["total"])) for k in ("total", "style", "content")}
    g_tf, g_pt = tf_run["gradient"], pt_run["gradient"]
    # Relative L2 error of the whole gradient (max-abs error is printed too, for information).
    grad = float(np.linalg.norm(g_pt - g_tf) / np.linalg.norm(g_tf))
    print("gradient max-abs error / max-abs:", float(np.abs(g_pt - g_tf).max() / np.abs(g_tf).max()))
    curve = max(abs(p["total"] - t["total"]) / abs(t["total"]) for p, t in zip(pt_run["curve"], tf_run["curve"]))
    return {"step0": step0, "gradient": grad, "curve": curve}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--precision", choices=("fp32", "fp64"), default="fp32",
                        help="both sides in this precision (fp64 takes max-pool near-ties out of the comparison)")
    parser.add_argument("--save", type=Path, help="store the TensorFlow numbers here (JSON)")
    args = parser.parse_args()
    content, style = demo_inputs(args.size)
    tf_run = tensorflow_run(content, style, args.steps, args.precision)
    pt_run = painterly_run(content, style, args.steps, args.precision)
    diff = compare(tf_run, pt_run)
    print(json.dumps({"size": args.size, "steps": args.steps, "precision": args.precision,
                      "relative_difference": diff}, indent=2))
    ok = max(diff["step0"].values()) <= 1e-5 and diff["gradient"] <= 1e-4 and diff["curve"] <= 0.01
    print("agreement:", "OK (step-0 <= 1e-5, gradient <= 1e-4, curve <= 1%)" if ok else "FAILED")
    if args.save:
        g = tf_run["gradient"]
        record = {
            "source": "benchmarks/tutorial_reference.py (TensorFlow + Keras VGG19, same weights and inputs)",
            "size": args.size,
            "steps": args.steps,
            "precision": args.precision,
            "curve": tf_run["curve"],
            "gradient": {"abs_sum": float(np.abs(g).sum()), "sq_sum": float((g.astype(np.float64) ** 2).sum()),
                         "abs_max": float(np.abs(g).max()), "sample": g[::7, ::7].round(6).tolist()},
            "agreement": diff,
        }
        args.save.write_text(json.dumps(record, indent=1) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
