"""Small models of the kinds users bring, shared by the tests."""
import torch
from torch import nn


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(32, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


class ConvNet(nn.Module):
    """3x3, 1x1, depthwise and grouped convolutions with batch norm, and Conv1d (k = 3 and 1)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.depthwise = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.pointwise = nn.Conv2d(16, 32, 1)
        self.grouped = nn.Conv2d(32, 32, 3, stride=2, padding=1, groups=4)
        self.temporal = nn.Conv1d(32, 16, 3, padding=1)
        self.mix = nn.Conv1d(16, 16, 1)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.bn(self.stem(x)))
        x = torch.relu(self.pointwise(self.depthwise(x)))
        x = torch.relu(self.grouped(x))  # [N, 32, 4, 4]
        x = self.mix(torch.relu(self.temporal(x.flatten(2))))  # [N, 16, 16]
        return self.head(x.mean(2))


class TinyLm(nn.Module):
    """An embedding, a PyTorch TransformerEncoderLayer (fused in_proj_weight) and an output layer."""

    def __init__(self, vocab=50, dim=32):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.layer = nn.TransformerEncoderLayer(dim, 4, 64, dropout=0.0, batch_first=True)
        self.out = nn.Linear(dim, vocab)

    def forward(self, ids):
        return self.out(self.layer(self.embed(ids)))


def images(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g)


def tokens(n=4, length=12, vocab=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (n, length), generator=g)
