import torch


class TinyMLP(torch.nn.Module):
    def __init__(self, hidden=8):
        super().__init__()
        self.fc1 = torch.nn.Linear(3, hidden)
        self.fc2 = torch.nn.Linear(hidden, 2)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))
