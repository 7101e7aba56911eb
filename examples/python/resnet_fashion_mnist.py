"""Example (a): torchvision's ResNet-18 (a one-channel stem) trained on Fashion-MNIST with
Quant-Noise in a plain PyTorch loop, compressed with iPQ through qnoise.quantize with the same
loop as finetuning, saved, reloaded onto qnoise's kernels; accuracy and file size printed. With
--torchscript FILE the compressed model is also scripted and saved for the C++ side (example (c)):

    /usr/bin/python3 examples/python/resnet_fashion_mnist.py --steps 400 --torchscript resnet18.pt
    qnoise eval --torchscript resnet18.pt       # the same accuracy, from the qnoise program
"""
import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import fashion_mnist  # noqa: E402
import qnoise  # noqa: E402


def resnet18():
    model = torchvision.models.resnet18(num_classes=10)
    model.conv1 = torch.nn.Conv2d(1, 64, 3, stride=1, padding=1, bias=False)  # 28x28, one channel
    return model


# 3x3 kernels in blocks of one whole kernel (9 values), 1x1 shortcuts and the classifier in blocks
# of 8, the 64-channel stem stays float16 (576 weights). Stages from the largest layers down.
PLAN = {"stages": [{"name": "layer4", "layers": ["layer4.*conv*"], "block_size": 9, "n_centroids": 256},
                   {"name": "layer3", "layers": ["layer3.*conv*"], "block_size": 9, "n_centroids": 256},
                   {"name": "layers1-2", "layers": ["layer[12].*conv*"], "block_size": 9, "n_centroids": 256},
                   {"name": "shortcuts", "layers": ["*downsample.0"], "block_size": 8, "n_centroids": 256},
                   {"name": "classifier", "layers": ["fc"], "block_size": 8, "n_centroids": 64}],
        "noise_rate": 0.05}


def train(model, images, labels, steps, optimizer, generator, batch=64):
    model.train()
    for _ in range(steps):
        index = torch.randint(0, len(images), (batch,), generator=generator)
        loss = torch.nn.functional.cross_entropy(model(images[index]), labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


def accuracy(model, images, labels):
    with torch.no_grad():
        correct = sum((model(images[i:i + 500]).argmax(1) == labels[i:i + 500]).sum().item()
                      for i in range(0, len(images), 500))
    return 100.0 * correct / len(images)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--finetune-steps", type=int, default=100)
    parser.add_argument("--noise", type=float, default=0.05)
    parser.add_argument("--test-images", type=int, default=10000)
    parser.add_argument("--torchscript", help="also write the compressed model, scripted, to this file")
    parser.add_argument("--float-control", action="store_true",
                        help="also train the float model for as many more steps as iPQ finetunes, for a fair baseline")
    args = parser.parse_args()
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    train_images, train_labels = fashion_mnist.load("train")
    test_images, test_labels = fashion_mnist.load("t10k")
    test_images, test_labels = test_images[:args.test_images], test_labels[:args.test_images]

    model = resnet18()
    start = time.time()
    with qnoise.QuantNoise(model, [("conv1", 0.0, 9), ("*conv*", args.noise, 9), ("*", args.noise, 8)]):
        train(model, train_images, train_labels, args.steps, torch.optim.Adam(model.parameters(), 1e-3), generator)
    float_accuracy = accuracy(model, test_images, test_labels)
    print(f"trained {args.steps} steps with Quant-Noise p={args.noise} in {time.time() - start:.0f} s: "
          f"test accuracy {float_accuracy:.2f}%")

    def finetune(stage):
        train(model, train_images, train_labels, args.finetune_steps, torch.optim.Adam(stage.parameters(), 1e-4),
              generator)
        print(f"  stage {stage.index} '{stage.name}' ({len(stage.layers)} layers) finetuned: "
              f"{accuracy(model, test_images[:2000], test_labels[:2000]):.2f}% on 2000 test images")

    control_accuracy = None
    if args.float_control:  # the same extra updates as iPQ's finetuning, in float
        control = copy.deepcopy(model)
        with qnoise.QuantNoise(control, [("conv1", 0.0, 9), ("*conv*", args.noise, 9), ("*", args.noise, 8)]):
            train(control, train_images, train_labels, args.finetune_steps * len(PLAN["stages"]),
                  torch.optim.Adam(control.parameters(), 1e-4), torch.Generator().manual_seed(1))
        control_accuracy = accuracy(control, test_images, test_labels)
    float_bytes = 4 * sum(t.numel() for t in model.state_dict().values() if t.is_floating_point())
    start = time.time()
    calibration = [train_images[i:i + 256] for i in range(0, 2048, 256)]
    qnoise.quantize(model, PLAN, finetune=finetune, calibration=calibration)
    print(f"iPQ in {time.time() - start:.0f} s")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "resnet18.qnz"
        size = qnoise.save(model, path)
        served = qnoise.load(path, resnet18())
        packed = sum(isinstance(m, qnoise.PackedLayer) for m in served.modules())
        ipq_accuracy = accuracy(served, test_images, test_labels)
        if args.torchscript:
            torch.jit.save(torch.jit.script(served), args.torchscript)
    print(f"float32: {float_bytes} bytes, {float_accuracy:.2f}%")
    if control_accuracy is not None:
        print(f"float32 trained {args.finetune_steps * len(PLAN['stages'])} more steps (as many as iPQ's "
              f"finetuning): {control_accuracy:.2f}%")
    print(f"iPQ .qnz: {size} bytes ({float_bytes / size:.1f}x smaller), {ipq_accuracy:.2f}% "
          f"({ipq_accuracy - float_accuracy:+.2f} points), {packed} layers on qnoise's kernels")


if __name__ == "__main__":
    main()
