#!/usr/bin/env python3
"""Converts the MiniFASNet passive-liveness weights (PyTorch state dicts, Apache-2.0,
minivision-ai/Silent-Face-Anti-Spoofing at b6d5f04) to ONNX, once.

    pip install torch onnx onnxruntime numpy
    python3 scripts/models/convert_minifasnet.py ../shared/models/minifasnet models/

The network definition below follows the original `src/model_lib/MiniFASNet.py`
(MiniFASNetV2 and MiniFASNetV1SE, 80x80 input, 3 classes, class 1 = live). Layer
widths are read from the state dict rather than restated. Input: a BGR crop of
`scale` x the face box, resized to 80x80, raw 0-255 floats (no normalisation), NCHW.
The script checks that ONNX Runtime reproduces PyTorch's outputs.
"""
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn


def conv_shape(sd, prefix):
    w = sd[prefix + ".conv.weight"]
    out_c, in_per_group, kh, kw = w.shape
    depthwise = in_per_group == 1 and out_c > 1
    return (out_c if depthwise else in_per_group), out_c, (kh, kw), (out_c if depthwise else 1)


class ConvBlock(nn.Module):
    """conv + BN + PReLU (Conv_block)."""

    def __init__(self, sd, prefix, stride, padding, activation=True):
        super().__init__()
        in_c, out_c, kernel, groups = conv_shape(sd, prefix)
        self.conv = nn.Conv2d(in_c, out_c, kernel, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_c)
        self.prelu = nn.PReLU(out_c) if activation else None

    def forward(self, x):
        x = self.bn(self.conv(x))
        return self.prelu(x) if self.prelu is not None else x


class SEModule(nn.Module):
    def __init__(self, sd, prefix):
        super().__init__()
        reduced, channels = sd[prefix + ".fc1.weight"].shape[:2]
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, reduced, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(reduced)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(reduced, channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        s = self.sigmoid(self.bn2(self.fc2(self.relu(self.bn1(self.fc1(self.avg_pool(x)))))))
        return x * s


class DepthWise(nn.Module):
    """1x1 expand, depthwise 3x3, 1x1 project (no activation), optional SE and residual."""

    def __init__(self, sd, prefix, stride, residual):
        super().__init__()
        self.conv = ConvBlock(sd, prefix + ".conv", 1, 0)
        self.conv_dw = ConvBlock(sd, prefix + ".conv_dw", stride, 1)
        self.project = ConvBlock(sd, prefix + ".project", 1, 0, activation=False)
        self.se_module = SEModule(sd, prefix + ".se_module") if prefix + ".se_module.fc1.weight" in sd else None
        self.residual = residual

    def forward(self, x):
        y = self.project(self.conv_dw(self.conv(x)))
        if self.se_module is not None:
            y = self.se_module(y)
        return x + y if self.residual else y


class Stage(nn.Module):
    def __init__(self, sd, prefix):
        super().__init__()
        n = len({k.split(".")[2] for k in sd if k.startswith(prefix + ".model.")})
        self.model = nn.Sequential(*[DepthWise(sd, f"{prefix}.model.{i}", 1, True) for i in range(n)])

    def forward(self, x):
        return self.model(x)


class MiniFASNet(nn.Module):
    def __init__(self, sd):
        super().__init__()
        self.conv1 = ConvBlock(sd, "conv1", 2, 1)
        self.conv2_dw = ConvBlock(sd, "conv2_dw", 1, 1)
        self.conv_23 = DepthWise(sd, "conv_23", 2, False)
        self.conv_3 = Stage(sd, "conv_3")
        self.conv_34 = DepthWise(sd, "conv_34", 2, False)
        self.conv_4 = Stage(sd, "conv_4")
        self.conv_45 = DepthWise(sd, "conv_45", 2, False)
        self.conv_5 = Stage(sd, "conv_5")
        self.conv_6_sep = ConvBlock(sd, "conv_6_sep", 1, 0)
        self.conv_6_dw = ConvBlock(sd, "conv_6_dw", 1, 0, activation=False)
        embedding, flat = sd["linear.weight"].shape
        self.linear = nn.Linear(flat, embedding, bias=False)
        self.bn = nn.BatchNorm1d(embedding)
        self.prob = nn.Linear(embedding, sd["prob.weight"].shape[0], bias=False)

    def forward(self, x):
        x = self.conv_6_dw(self.conv_6_sep(self.conv_5(self.conv_45(self.conv_4(self.conv_34(
            self.conv_3(self.conv_23(self.conv2_dw(self.conv1(x))))))))))
        x = self.prob(self.bn(self.linear(x.flatten(1))))
        return torch.softmax(x, dim=1)


def load_state_dict(path):
    sd = torch.load(path, map_location="cpu", weights_only=False)
    return {k.removeprefix("module."): v for k, v in sd.items()}


def main():
    src, dst = Path(sys.argv[1]), Path(sys.argv[2])
    import onnxruntime as ort

    for name, out in [("2.7_80x80_MiniFASNetV2.pth", "minifasnet_v2_2.7.onnx"),
                      ("4_0_0_80x80_MiniFASNetV1SE.pth", "minifasnet_v1se_4.0.onnx")]:
        sd = load_state_dict(src / name)
        net = MiniFASNet(sd)
        missing, unexpected = net.load_state_dict(sd, strict=True), None
        net.eval()
        x = torch.rand(4, 3, 80, 80) * 255
        with torch.no_grad():
            want = net(x).numpy()
        path = dst / out
        torch.onnx.export(net, x[:1], str(path), input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, opset_version=13,
                          dynamo=False)
        got = ort.InferenceSession(str(path)).run(None, {"input": x.numpy()})[0]
        err = float(np.abs(got - want).max())
        print(f"{name} -> {path}: max |onnx - torch| = {err:.2e}")
        assert err < 1e-4, err


if __name__ == "__main__":
    main()
