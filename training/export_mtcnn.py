"""Export MTCNN's three nets (weights: facenet-pytorch 2.6.0's data/{pnet,rnet,onet}.pt) to ONNX for onnxruntime.

    pip download --no-deps facenet-pytorch==2.6.0 && unzip facenet_pytorch-2.6.0-py3-none-any.whl
    python training/export_mtcnn.py facenet_pytorch/data daemon/retouch/models/faces

O-Net keeps its landmark head (`points`: the eyes, the nose tip and the mouth corners, as 5 x then 5 y, each a
fraction of the 48 px crop), which `retouch.ops.facealign` uses to align faces for the face models.
"""
import sys
from pathlib import Path

import torch
from torch import nn

src, out = Path(sys.argv[1]), Path(sys.argv[2])  # .../facenet_pytorch/data, .../retouch/models/faces


class PNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1, self.conv4_2 = nn.Conv2d(32, 2, 1), nn.Conv2d(32, 4, 1)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return torch.softmax(self.conv4_1(x), dim=1)[:, 1], self.conv4_2(x)


class RNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1, self.dense5_2 = nn.Linear(128, 2), nn.Linear(128, 4)

    def forward(self, x):
        x = self.pool2(self.prelu2(self.conv2(self.pool1(self.prelu1(self.conv1(x))))))
        x = self.prelu4(self.dense4(self.prelu3(self.conv3(x)).permute(0, 3, 2, 1).flatten(1)))
        return torch.softmax(self.dense5_1(x), dim=1)[:, 1], self.dense5_2(x)


class ONet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1, self.dense6_2, self.dense6_3 = nn.Linear(256, 2), nn.Linear(256, 4), nn.Linear(256, 10)

    def forward(self, x):
        x = self.pool2(self.prelu2(self.conv2(self.pool1(self.prelu1(self.conv1(x))))))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu5(self.dense5(self.prelu4(self.conv4(x)).permute(0, 3, 2, 1).flatten(1)))
        return torch.softmax(self.dense6_1(x), dim=1)[:, 1], self.dense6_2(x), self.dense6_3(x)


names = {"pnet": ["face", "box"], "rnet": ["face", "box"], "onet": ["face", "box", "points"]}
for name, net, size in (("pnet", PNet(), 12), ("rnet", RNet(), 24), ("onet", ONet(), 48)):
    net.load_state_dict(torch.load(src / f"{name}.pt", weights_only=True))
    dims = {0: "n", 2: "h", 3: "w"} if name == "pnet" else {0: "n"}
    torch.onnx.export(net.eval(), torch.zeros(1, 3, size, size), out / f"mtcnn-{name}.onnx", dynamo=False,
                      opset_version=17, input_names=["image"], output_names=names[name],
                      dynamic_axes={"image": dims, **{output: {0: "n"} for output in names[name]}})
